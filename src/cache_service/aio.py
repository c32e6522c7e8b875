"""AsyncCacheService: the asyncio twin of CacheService, plus ready-made async instances.

Same constructor, same methods, awaited::

    from cache_service.aio import AsyncCacheService, api_cache

    cache = AsyncCacheService("user", default_ttl=600)
    await cache.set("user:123", {"name": "John"})
    await cache.get("user:123")
    user = await cache.get_or_set("user:7", lambda: db.get_user(7), ttl=300)

Every method is one line over the operations of ``ServiceCore``, driven by ``Target.arun``
with the ``redis.asyncio`` client of the running event loop. A service and a CacheService
naming the same Redis share one target (breaker, memory store, journal), so they see the same
data whether Redis is up or down. Each event loop gets its own client; it is closed by
``aclose()`` or, at the latest, when ``asyncio.run`` shuts the loop down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from time import perf_counter
from types import TracebackType
from typing import Any

from . import batch, counters, flows, keyops
from ._ops import read, write
from ._ops.read import Discard
from .breaker import Gate
from .core import TTL, ServiceCore
from .host import GEN
from .keys import MAX_KEY_LENGTH, validate_key
from .loading import load_policy
from .near import MISS
from .redis_backend import CONNECTIVITY_ERRORS, OUTAGES, classify_error, drop_idle
from .tags import Tagged

__all__ = ["AsyncCacheService", "api_cache", "session_cache", "user_cache"]


class AsyncCacheService(ServiceCore):
    """A namespaced cache on Redis (``redis.asyncio``) with the in-memory fallback.

    Awaits never raise because Redis is down or slow; a cancelled await leaves no connection
    with an unread reply in the pool and no lock held.
    """

    async def get(self, key: str, default: Any = None) -> Any:
        """The cached value for ``key`` (a fresh copy), or ``default`` on a miss."""
        # The twin of CacheService.get's fast path (see there): one await of the client's
        # GET, no generator; anything else goes to the ``_get`` operation.
        ctx = self._ctx
        t = ctx.target
        if ctx.near is not None:
            found = read.near_hit(ctx, key)
            if found is not MISS:
                return found
            return await t.arun(read.get(ctx, key, default, looked=True))
        if t._page[GEN] == t._closed_gen or t.gate() is Gate.REDIS:
            if type(key) is not str or not key or len(key) > MAX_KEY_LENGTH \
                    or not key.isascii():
                key = validate_key(key)
            k = ctx.head + key
            timed = next(t.get_ticks) & 15 == 0  # 1 in 16 timed, counted 16 times
            if timed:
                started = perf_counter()
            client = t._async_client()
            try:
                raw = await client.get(k)
            except CONNECTIVITY_ERRORS as exc:
                kind = classify_error(exc, t.location.kind)
                if kind == "broken":  # ``_get``'s request is the one retry
                    await drop_idle(client)
                elif kind in OUTAGES:  # an error reply: ``_get`` meets it and accounts it
                    t.failed(exc)
                return await t.arun(read.get(ctx, key, default))
            result = read.reply(ctx, k, raw, default)
            if type(result) is Discard:
                return await t.arun(read.discard(ctx, k, result.why, default, ctx.counters))
            if type(result) is Tagged:
                return await t.arun(read.check_tagged(ctx, result, default, False, ctx.counters))
            if timed:
                t.get_latency.record(perf_counter() - started, 16)
            return result
        return read.from_memory(ctx, ctx.keys.full(key), default, False, ctx.counters)

    async def set(self, key: str, value: Any, ttl: TTL = None, *,
            tags: Iterable[str] = ()) -> None:
        """Cache ``value`` for ``ttl`` seconds (``None``: the service's default TTL), with
        ``tags`` (see ``invalidate_tags``)."""
        await self._target.arun(write.put(self._ctx, key, value, ttl, tags=tags))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the keys that hit (one MGET; per slot on Cluster)."""
        return await self._target.arun(batch.get_many(self._ctx, keys))

    async def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None, *,
                 tags: Iterable[str] = ()) -> None:
        """Cache every ``key: value`` of ``mapping`` (one pipeline); all values are encoded
        before anything is written."""
        await self._target.arun(batch.set_many(self._ctx, mapping, ttl, tags))

    async def add(self, key: str, value: Any, ttl: TTL = None, *, tags: Iterable[str] = ()) -> bool:
        """Cache ``value`` only if ``key`` holds no live value; True if stored."""
        return await self._target.arun(keyops.add(self._ctx, key, value, ttl, tags))

    async def incr(self, key: str, delta: int = 1, ttl: TTL = None) -> int:
        """Add ``delta`` to the int at ``key`` atomically (absent: 0, given ``ttl``); the result."""
        return await self._target.arun(counters.incr(self._ctx, key, delta, ttl))

    async def decr(self, key: str, delta: int = 1, ttl: TTL = None) -> int:
        """Subtract ``delta`` from the int at ``key`` atomically; the result."""
        return await self._target.arun(counters.decr(self._ctx, key, delta, ttl))

    async def touch(self, key: str, ttl: TTL = None) -> bool:
        """Give ``key``'s value a new TTL (``None``: the default TTL); False if absent."""
        return await self._target.arun(keyops.touch(self._ctx, key, ttl))

    async def ttl(self, key: str) -> float | None:
        """Seconds ``key``'s value has left, or ``None`` if absent."""
        return await self._target.arun(keyops.ttl(self._ctx, key))

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live value of ours."""
        return await self._target.arun(keyops.exists(self._ctx, key))

    async def invalidate_tags(self, *tags: str) -> None:
        """Every value written with any of ``tags`` is a miss from now on, in every process."""
        await self._target.arun(write.invalidate_tags(self._ctx, tags))

    async def delete(self, *keys: str) -> int:
        """Remove ``keys``; returns how many existed."""
        return await self._target.arun(write.delete(self._ctx, keys))

    async def invalidate_pattern(self, pattern: str) -> int:
        """Remove this service's keys matching the Redis glob ``pattern``; returns the count."""
        return await self._target.arun(write.invalidate_pattern(self._ctx, pattern))

    async def clear_all(self) -> int:
        """Remove every key of this service's prefix (and nothing else); returns the count."""
        return await self._target.arun(write.clear_all(self._ctx))

    async def is_redis_available(self) -> bool:
        """Whether calls go to Redis now; waits at most one connect timeout."""
        return await self._target.arun(read.is_available(self._ctx))

    async def get_or_set(
        self, key: str, loader: Callable[[], Any], ttl: TTL = None, *, cache_none: bool = False,
        jitter: float = 0.0, lock: bool = False, lock_ttl: float = 10.0, lock_wait: float = 5.0,
        stale_while_revalidate: float = 0.0, stale_if_error: float | None = None,
        tags: Iterable[str] = (),
    ) -> Any:
        """The cached value, or ``await loader()`` (or ``loader()``) cached; see CacheService."""
        return await self._target.arun(flows.get_or_set(self._ctx, key, ttl, load_policy(
            cache_none=cache_none, jitter=jitter, lock=lock, lock_ttl=lock_ttl,
            lock_wait=lock_wait, stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error), task=asyncio.current_task(), tags=tags), loader)

    async def stats(self) -> dict[str, Any]:
        """Counters of this service plus its target's breaker, journal and memory figures."""
        return self._stats()

    async def aclose(self) -> None:
        """Close this event loop's connections of the service's target (shared with others)."""
        await self._target.aclose()

    async def __aenter__(self) -> AsyncCacheService:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


# Ready-made services of the usage contract, awaitable; they follow REDIS_URL and connect on
# first use (per event loop), so importing this module touches no network. A bad REDIS_URL
# raises its ConfigurationError on first use, not at import.
api_cache = AsyncCacheService("api", default_ttl=300, _defer_location_error=True)
user_cache = AsyncCacheService("user", default_ttl=600, _defer_location_error=True)
session_cache = AsyncCacheService("session", default_ttl=1800, _defer_location_error=True)
