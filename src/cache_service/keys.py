"""Key namespacing and prefix validation (pure, no I/O; globs: ``redis_glob``).

Every key this library writes is ``cs:{prefix}::{key}``. A prefix is one or more segments of
``[A-Za-z0-9_.-]`` joined by single ``:``, so it never contains ``::`` nor ends with ``:``; the
first ``::`` therefore always ends the prefix and no (prefix, key) pair can collide with another.
Prefixes hold no glob characters, so a prefix-wide pattern needs no escaping.

Keys, patterns and tags are checked here before anything is sent or written: a ``str`` of
1-``MAX_KEY_LENGTH`` characters that encodes as UTF-8 (no lone surrogates, which neither Redis
nor SQLite can store). Any other character is allowed, NUL included: Redis keys are binary-safe
and both fallback stores keep them exactly. ``redact`` is how a key may appear in a log.
"""

from __future__ import annotations

import hashlib
import re

from cache_service.errors import ConfigurationError

__all__ = [
    "MAX_KEY_LENGTH",
    "NAMESPACE",
    "KeySpace",
    "encodable",
    "redact",
    "validate_key",
    "validate_prefix",
    "validate_text",
]

NAMESPACE = "cs:"
MAX_PREFIX_LENGTH = 64
MAX_KEY_LENGTH = 4096
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.\-]+(?::[A-Za-z0-9_.\-]+)*")


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is allowed, else raise ConfigurationError saying what is."""
    if not isinstance(prefix, str):
        raise ConfigurationError(f"prefix must be a str, not {type(prefix).__name__}")
    if not (0 < len(prefix) <= MAX_PREFIX_LENGTH) or not _PREFIX_RE.fullmatch(prefix):
        raise ConfigurationError(
            f"invalid prefix {prefix!r}: use 1-{MAX_PREFIX_LENGTH} characters from "
            "A-Z a-z 0-9 _ . - in segments joined by single ':' (e.g. 'api' or 'api:v2')"
        )
    return prefix


def encodable(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (no lone surrogates); ASCII costs one C scan."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def validate_text(text: object, what: str, limit: int = MAX_KEY_LENGTH) -> str:
    """``text`` as a plain str if it is a non-empty str of at most ``limit`` characters that
    encodes as UTF-8, else a ConfigurationError saying what is allowed."""
    if type(text) is not str:
        if not isinstance(text, str):
            raise ConfigurationError(f"{what} must be str, not {type(text).__name__}")
        text = str(text)
    if not text or len(text) > limit or not encodable(text):
        raise ConfigurationError(
            f"{what} must be str of 1-{limit} characters that encode as UTF-8 (any "
            f"character but a lone surrogate such as '\\ud800'), got "
            f"{_shown(text)}")
    return text


def _shown(text: str) -> str:
    """A refused value as an error message shows it: short, one line, never huge."""
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"


def validate_key(key: object) -> str:
    """Return ``key`` if it is a usable cache key (see the module docstring)."""
    return validate_text(key, "cache keys")


def redact(full_key: str) -> str:
    """How a Redis key of ours appears in logs: its namespace part and a short hash of the
    whole (keys often hold session ids or tokens)."""
    end = full_key.find("::", len(NAMESPACE) + 1)
    head = full_key[:end + 2] if end >= 0 else ""
    digest = hashlib.sha256(full_key.encode(errors="surrogatepass")).hexdigest()[:10]
    return f"{head}<key #{digest}>"


class KeySpace:
    """Maps a service's keys and patterns into its ``cs:{prefix}::`` namespace."""

    __slots__ = ("all_pattern", "head", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = validate_prefix(prefix)
        self.head = f"{NAMESPACE}{prefix}::"
        self.all_pattern = self.head + "*"

    def full(self, key: str) -> str:
        """The Redis key for ``key``; validates it."""
        if type(key) is not str or not key or len(key) > MAX_KEY_LENGTH or not key.isascii():
            key = validate_key(key)
        return self.head + key

    def pattern(self, glob: str) -> str:
        """The namespaced Redis glob for a caller's glob on their own keys."""
        return self.head + validate_text(glob, "patterns (Redis globs such as 'user:*')")
