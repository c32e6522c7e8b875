"""cache_service: a Redis cache that falls back to a bounded memory store and stays correct.

Importing this package never touches the network; services connect on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cache_service import instances as _instances
from cache_service._near.store import NearCache
from cache_service.aio import AsyncCacheService
from cache_service.codec import Codec, JsonCodec, PickleCodec
from cache_service.decorators import cached
from cache_service.errors import (
    CacheError,
    ConfigurationError,
    LoadTimeout,
    NotAnIntegerError,
    SerializationError,
    ValueTooLargeError,
)
from cache_service.loaded import Loaded
from cache_service.ready_made import READY_MADE
from cache_service.service import CacheService

__all__ = [
    "AsyncCacheService",
    "CacheError",
    "CacheService",
    "Codec",
    "ConfigurationError",
    "JsonCodec",
    "LoadTimeout",
    "Loaded",
    "NearCache",
    "NotAnIntegerError",
    "PickleCodec",
    "SerializationError",
    "ValueTooLargeError",
    "api_cache",
    "cached",
    "session_cache",
    "user_cache",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from cache_service.instances import api_cache, session_cache, user_cache


def __getattr__(name: str) -> Any:
    """The ready-made services, made on first use (``instances``), never at import."""
    if name in READY_MADE:
        made = getattr(_instances, name)
        globals()[name] = made
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
