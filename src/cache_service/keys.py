"""Key namespacing, prefix validation and Redis-style glob matching (pure, no I/O).

Every key this library writes is ``cs:{prefix}::{key}``. A prefix is one or more segments of
``[A-Za-z0-9_.-]`` joined by single ``:``, so it never contains ``::`` nor ends with ``:``; the
first ``::`` therefore always ends the prefix and no (prefix, key) pair can collide with another.
Prefixes hold no glob characters, so a prefix-wide pattern needs no escaping.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .errors import ConfigurationError

__all__ = [
    "NAMESPACE",
    "KeySpace",
    "escape_glob",
    "glob_to_regex",
    "validate_key",
    "validate_prefix",
]

NAMESPACE = "cs:"
MAX_PREFIX_LENGTH = 64
MAX_KEY_LENGTH = 4096
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.\-]+(?::[A-Za-z0-9_.\-]+)*")
_GLOB_SPECIALS = frozenset("*?[]\\")


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


def escape_glob(text: str) -> str:
    """Escape Redis glob characters so ``text`` matches only itself."""
    return "".join("\\" + c if c in _GLOB_SPECIALS else c for c in text)


@lru_cache(maxsize=256)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Redis glob (``* ? [abc] [^a] [a-z] \\x``) to an anchored regex.

    Mirrors Redis' ``stringmatchlen`` so the memory store and SCAN MATCH agree on what matches.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = i + 1
            negate = j < n and pattern[j] == "^"
            if negate:
                j += 1
            items: list[str] = []
            while j < n and pattern[j] != "]":
                if pattern[j] == "\\" and j + 1 < n:
                    items.append(re.escape(pattern[j + 1]))
                    j += 2
                elif j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                    lo, hi = sorted((pattern[j], pattern[j + 2]))
                    items.append(f"{re.escape(lo)}-{re.escape(hi)}")
                    j += 3
                else:
                    items.append(re.escape(pattern[j]))
                    j += 1
            # Redis treats an unterminated class as running to the end of the pattern.
            body = "".join(items)
            if not body:
                out.append("[^\\s\\S]" if not negate else "[\\s\\S]")
            else:
                out.append(f"[{'^' if negate else ''}{body}]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


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
