"""Exception tree of cache_service.

    CacheError                      root of everything this library raises
    ├── ConfigurationError          also ValueError: a bad prefix, TTL, URL or option
    ├── SerializationError          also TypeError: a value the codec cannot store exactly
    │   └── ValueTooLargeError      also ValueError: encoded value over ``max_value_bytes``
    │                               (or a counter leaving ±(2**53 - 1))
    ├── NotAnIntegerError           also TypeError: incr/decr on a value that is not an int
    ├── LoadTimeout                 also TimeoutError: a load passed ``hard_timeout`` and
    │                               there was no stale value nor ``default`` to serve
    └── (a miss is never an exception; Redis errors never reach callers)
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "ConfigurationError",
    "LoadTimeout",
    "NotAnIntegerError",
    "SerializationError",
    "ValueTooLargeError",
]


class CacheError(Exception):
    """Root of every error raised by cache_service."""


class ConfigurationError(CacheError, ValueError):
    """A constructor argument, TTL, key or prefix is not allowed; the message says what is."""


class SerializationError(CacheError, TypeError):
    """A value cannot be stored so that ``get()`` returns it with its exact types."""


class ValueTooLargeError(SerializationError, ValueError):
    """The encoded value is larger than the configured ``max_value_bytes``."""


class NotAnIntegerError(CacheError, TypeError):
    """``incr``/``decr`` found a value that is not an int counter; it was left unchanged."""


class LoadTimeout(CacheError, TimeoutError):
    """A load did not finish within ``hard_timeout`` and there was nothing else to serve (no
    stale value, no ``default``); the load goes on in the background and fills the cache."""
