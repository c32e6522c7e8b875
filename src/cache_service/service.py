"""CacheService: the blocking API of the usage contract."""

from __future__ import annotations

from typing import Any

from .core import TTL, ServiceCore

__all__ = ["CacheService"]


class CacheService(ServiceCore):
    """A namespaced cache on Redis that falls back to a bounded in-memory store.

    Calls never raise because Redis is down or slow: a circuit breaker sends them to the
    memory store at once and moves back to Redis by itself, replaying what was invalidated
    meanwhile. Bad input (keys, TTLs, unserialisable values) raises before anything is written.
    """

    def get(self, key: str, default: Any = None) -> Any:
        """The cached value for ``key`` (a fresh copy), or ``default`` on a miss."""
        return self._target.run(self._get(key, default))

    def set(self, key: str, value: Any, ttl: TTL = None) -> None:
        """Cache ``value`` for ``ttl`` seconds (``None``: the service's default TTL)."""
        self._target.run(self._set(key, value, ttl))

    def delete(self, *keys: str) -> int:
        """Remove ``keys``; returns how many existed."""
        return self._target.run(self._delete(keys))

    def invalidate_pattern(self, pattern: str) -> int:
        """Remove this service's keys matching the Redis glob ``pattern``; returns the count."""
        return self._target.run(self._invalidate_pattern(pattern))

    def clear_all(self) -> int:
        """Remove every key of this service's prefix (and nothing else); returns the count."""
        return self._target.run(self._clear_all())

    def is_redis_available(self) -> bool:
        """Whether calls go to Redis now; blocks at most one connect timeout."""
        return self._target.run(self._is_available())

    def stats(self) -> dict[str, Any]:
        """Counters of this service plus its target's breaker, journal and memory figures."""
        return self._stats()

    def close(self) -> None:
        """Close the pooled connections of this service's target (shared with others)."""
        self._target.close()
