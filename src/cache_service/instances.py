"""Ready-made services of the usage contract; they follow ``REDIS_URL`` and connect lazily.

A bad ``REDIS_URL`` does not make the import fail: the services raise its ConfigurationError
on first use instead (see ``unconfigured.py``).
"""

from __future__ import annotations

from cache_service.service import CacheService

__all__ = ["api_cache", "session_cache", "user_cache"]

api_cache = CacheService("api", default_ttl=300, _defer_location_error=True)
user_cache = CacheService("user", default_ttl=600, _defer_location_error=True)
session_cache = CacheService("session", default_ttl=1800, _defer_location_error=True)
