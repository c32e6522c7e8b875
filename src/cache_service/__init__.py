"""cache_service: a Redis cache that falls back to a bounded memory store and stays correct.

Importing this package never touches the network; services connect on first use.
"""

from __future__ import annotations

from .aio import AsyncCacheService
from .codec import Codec, JsonCodec, PickleCodec
from .decorators import cached
from .errors import (
    CacheError,
    ConfigurationError,
    NotAnIntegerError,
    SerializationError,
    ValueTooLargeError,
)
from .instances import api_cache, session_cache, user_cache
from .near import NearCache
from .service import CacheService

__all__ = [
    "AsyncCacheService",
    "CacheError",
    "CacheService",
    "Codec",
    "ConfigurationError",
    "JsonCodec",
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
