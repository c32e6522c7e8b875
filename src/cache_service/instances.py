"""Ready-made services of the usage contract; they follow ``REDIS_URL`` and connect lazily."""

from __future__ import annotations

from .service import CacheService

__all__ = ["api_cache", "session_cache", "user_cache"]

api_cache = CacheService("api", default_ttl=300)
user_cache = CacheService("user", default_ttl=600)
session_cache = CacheService("session", default_ttl=1800)
