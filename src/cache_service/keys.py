"""Key namespacing and prefix validation (pure, no I/O; globs: ``redis_glob``).

Every key this library writes is ``cs:{prefix}::{key}``. A prefix is one or more segments of
``[A-Za-z0-9_.-]`` joined by single ``:``, so it never contains ``::`` nor ends with ``:``; the
first ``::`` therefore always ends the prefix and no (prefix, key) pair can collide with another.
Prefixes hold no glob characters, so a prefix-wide pattern needs no escaping.
"""

from __future__ import annotations

import re

from .errors import ConfigurationError

__all__ = [
    "NAMESPACE",
    "KeySpace",
    "validate_key",
    "validate_prefix",
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


def validate_key(key: object) -> str:
    """Return ``key`` if it is a usable cache key (a non-empty str of bounded length)."""
    if type(key) is not str:
        if isinstance(key, str):
            return validate_key(str(key))
        raise ConfigurationError(f"cache keys must be str, not {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ConfigurationError(f"cache keys must be 1-{MAX_KEY_LENGTH} characters long")
    return key


class KeySpace:
    """Maps a service's keys and patterns into its ``cs:{prefix}::`` namespace."""

    __slots__ = ("all_pattern", "head", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = validate_prefix(prefix)
        self.head = f"{NAMESPACE}{prefix}::"
        self.all_pattern = self.head + "*"

    def full(self, key: str) -> str:
        """The Redis key for ``key``; validates it."""
        if type(key) is not str or not key or len(key) > MAX_KEY_LENGTH:
            validate_key(key)
        return self.head + key

    def pattern(self, glob: str) -> str:
        """The namespaced Redis glob for a caller's glob on their own keys."""
        if type(glob) is not str or not glob:
            raise ConfigurationError("a pattern must be a non-empty str glob, e.g. 'user:*'")
        return self.head + glob
