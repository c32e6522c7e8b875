# unasync: sync: """CacheService: the blocking API of the usage contract."""
# unasync: async-only begin
"""AsyncCacheService: the asyncio twin of CacheService, plus ready-made async instances.

Same constructor, same methods, awaited::

    from cache_service.aio import AsyncCacheService, api_cache

    cache = AsyncCacheService("user", default_ttl=600)
    await cache.set("user:123", {"name": "John"})
    await cache.get("user:123")
    user = await cache.get_or_set("user:7", lambda: db.get_user(7), ttl=300)

Every method is one line over the operations of ``ServiceCore``, driven by ``Target.arun``
with the asyncio client of the running event loop (``get`` and ``set`` have a fast
path for their common case). A service and a CacheService naming the same Redis share one
target (breaker, memory store, journal), so they see the same data whether Redis is up or
down. Each event loop gets its own client; it is closed by ``aclose()`` or, at the latest,
when ``asyncio.run`` shuts the loop down.

This file is the source of both services: ``scripts/gen_sync.py`` generates service.py
(CacheService) from it, by its rules (``async def`` -> ``def``, ``await`` dropped, ``arun``
-> ``run``...) and the ``# unasync:`` markers here. Run it after every edit; scripts/test
fails while service.py is stale.
"""
# unasync: async-only end

from __future__ import annotations

import asyncio  # unasync: async-only
import typing  # unasync: async-only
from collections.abc import Callable, Iterable, Mapping
from math import ceil
from time import perf_counter
from types import TracebackType  # unasync: async-only
from typing import Any

from cache_service._host.breaker import Gate
from cache_service._host.state import GEN, NEAR_USED, key_slot
from cache_service._near.store import MISS
from cache_service._ops import batch, incr, keyops, listing, read, write
from cache_service._ops.context import MISSING
from cache_service._ops.get_or_set import get_or_set as get_or_set_op
from cache_service._ops.loading import load_policy
from cache_service._ops.read import Discard
from cache_service._ops.tags import Tagged
from cache_service._redis.backend import CONNECTIVITY_ERRORS, OUTAGES, classify_error, drop_idle
from cache_service.core import TTL, ServiceCore
from cache_service.errors import ConfigurationError
from cache_service.keys import MAX_KEY_LENGTH, validate_key
from cache_service.ready_made import make_once  # unasync: async-only

# unasync: sync: __all__ = ["CacheService"]
__all__ = ["AsyncCacheService", "api_cache", "session_cache", "user_cache"]  # unasync: async-only


class AsyncCacheService(ServiceCore):
    # unasync: sync-only begin
    # """A namespaced cache on Redis that falls back to a bounded in-memory store.
    #
    # Calls never raise because Redis is down or slow: a circuit breaker sends them to the
    # memory store at once and moves back to Redis by itself, replaying what was invalidated
    # meanwhile. Bad input (keys, TTLs, unserialisable values) raises before anything is written.
    # """
    # unasync: sync-only end
    # unasync: async-only begin
    """A namespaced cache on Redis (asyncio) with the in-memory fallback.

    Awaits never raise because Redis is down or slow; a cancelled await leaves no connection
    with an unread reply in the pool and no lock held.
    """
    # unasync: async-only end

    async def get(self, key: str, default: Any = None) -> Any:
        """The cached value for ``key`` (a fresh copy), or ``default`` on a miss."""
        # Fast path for the common cases (``set`` has one too), with no generator around the
        # GET; everything else goes to the ``read.get`` operation: suspending a generator
        # around a blocking GET costs ~5% of the call, and each Python frame between the caller and
        # redis-py ~1% (counted with callgrind on CacheService).
        ctx = self._ctx
        t = ctx.target
        near = ctx.near
        if near is not None:  # a near hit while Redis is in use: no I/O, a fresh copy
            if t._page[GEN] == t._closed_gen:
                found = near.lookup(ctx.keys.full(key))
                if found is not MISS:
                    next(ctx.counters.hits)
                    return found
            return await t.arun(read.get(ctx, key, default, looked=True))
        # ``t.gate()`` inlined for its common case: the page's generation (slot 0) is the one
        # this process last saw with the breaker closed.
        if t._page[GEN] == t._closed_gen or t.gate() is Gate.REDIS:
            if type(key) is not str or not key or len(key) > MAX_KEY_LENGTH \
                    or not key.isascii():
                key = validate_key(key)
            k = ctx.head + key
            # 1 in 16 of these is timed and counts 16 times: the clock and the histogram
            # would cost ~1% of a hit. The slow paths below are timed by ``t.arun``.
            timed = next(t.get_ticks) & 15 == 0
            if timed:
                started = perf_counter()
            client = t._async_client()
            try:
                raw = await client.get(k)
            except CONNECTIVITY_ERRORS as exc:
                kind = classify_error(exc, t.location.kind)
                if kind == "broken":  # ``read.get``'s request is the one retry
                    await drop_idle(client)
                elif kind in OUTAGES:  # an error reply: ``read.get`` meets it and accounts it
                    t.failed(exc)  # opens the breaker
                return await t.arun(read.get(ctx, key, default))
            result = read.reply(ctx, k, raw, default)
            if type(result) is Discard:
                return await t.arun(read.discard(ctx, k, result.why, default, ctx.counters))
            if type(result) is Tagged:  # the one extra check an untagged hit pays
                return await t.arun(read.check_tagged(ctx, result, default, False, ctx.counters))
            if timed:
                t.get_latency.record(perf_counter() - started, 16)
            return result
        return read.from_memory(ctx, ctx.keys.full(key), default, False, ctx.counters)

    async def set(self, key: str, value: Any, ttl: TTL = None, *,
            tags: Iterable[str] = ()) -> None:
        """Cache ``value`` for ``ttl`` seconds (``None``: the service's default TTL), with
        ``tags`` (see ``invalidate_tags``)."""
        ctx = self._ctx
        t = ctx.target
        if tags or t._page[GEN] != t._closed_gen:  # tagged, or not known to be on Redis
            await t.arun(write.put(ctx, key, value, ttl, tags=tags))
            return
        # Fast path (like get's): an untagged SET with no generator around it.
        started = perf_counter()
        k, payload, seconds, value = write.encode(ctx, key, value, ttl)
        client = t._async_client()
        try:
            await client.set(k, payload, px=max(1, ceil(seconds * 1000)))
        except CONNECTIVITY_ERRORS as exc:
            kind = classify_error(exc, t.location.kind)
            if kind == "broken":  # ``put_encoded``'s request is the one retry
                await drop_idle(client)
            elif kind in OUTAGES:  # an error reply: ``put_encoded`` meets it and accounts it
                t.failed(exc)
            # Redis again, or the fallback
            await t.arun(write.put_encoded(ctx, k, payload, seconds, value))
            return
        # ``t.written([k], None)`` inlined: the key's slot on the host page moves (once the
        # host has a near cache), and this process's near copy goes
        page = t._page
        if page[NEAR_USED]:
            page[key_slot(k)] += 1
        if t.near is not None:
            t.near.invalidate((k,))
        t.set_latency.record(perf_counter() - started)

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
        return await self._target.arun(incr.incr(self._ctx, key, delta, ttl))

    async def decr(self, key: str, delta: int = 1, ttl: TTL = None) -> int:
        """Subtract ``delta`` from the int at ``key`` atomically; the result."""
        return await self._target.arun(incr.decr(self._ctx, key, delta, ttl))

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

    async def keys(self, pattern: str = "*", *, limit: int = 100_000) -> list[str]:
        """Up to ``limit`` of this service's keys matching the Redis glob ``pattern`` (SCAN
        under the service's prefix only; the fallback store's keys while Redis is out)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be an int >= 1, got {limit!r}")
        return await self._target.arun(listing.keys(self._ctx, pattern, limit))

    async def clear_all(self) -> int:
        """Remove every key of this service's prefix (and nothing else); returns the count."""
        return await self._target.arun(write.clear_all(self._ctx))

    async def is_redis_available(self) -> bool:
        """Whether calls go to Redis now; takes at most one connect timeout."""
        return await self._target.arun(read.is_available(self._ctx))

    async def get_or_set(
        self, key: str, loader: Callable[[], Any], ttl: TTL = None, *, cache_none: bool = False,
        jitter: float = 0.0, lock: bool = False, lock_ttl: float = 10.0, lock_wait: float = 5.0,
        stale_while_revalidate: float = 0.0, stale_if_error: float | None = None,
        tags: Iterable[str] = (), soft_timeout: float | None = None,
        hard_timeout: float | None = None, eager_refresh: float | None = None,
        default: Any = MISSING,
    ) -> Any:
        """The cached value for ``key``, or ``loader()``'s (awaited) result, cached for ``ttl``.

        A cached falsy value is a hit. Concurrent misses of one key run ``loader`` once in this
        process (the others wait and share its value or exception; nothing is cached on an
        exception); ``lock=True`` also makes other processes wait for it (up to ``lock_wait``
        seconds) through a Redis lock that expires after ``lock_ttl``. ``None`` is cached only
        with ``cache_none``. ``jitter`` shortens the TTL by up to that fraction at random.
        ``stale_while_revalidate=S`` serves the expired value for S seconds while one caller
        reloads it; ``stale_if_error=E`` (default: S) serves it up to E seconds past expiry
        when the loader raises.

        Under pressure: past ``soft_timeout`` seconds a caller with a stale value to serve
        gets it while the load finishes in the background (and fills the cache); past
        ``hard_timeout`` every caller stops waiting (the stale value, else ``default`` if
        given, else ``LoadTimeout``). ``eager_refresh=F`` (0 < F < 1): a hit older than F of
        ``ttl`` starts one background refresh and returns at once. ``loader`` may return
        ``Loaded(value, ttl=..., tags=..., cache=False)`` to choose how its value is cached.
        """
        return await self._target.arun(get_or_set_op(self._ctx, key, ttl, load_policy(
            cache_none=cache_none, jitter=jitter, lock=lock, lock_ttl=lock_ttl,
            lock_wait=lock_wait, stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error, soft_timeout=soft_timeout,
            hard_timeout=hard_timeout, eager_refresh=eager_refresh),
            task=asyncio.current_task(), tags=tags, default=default), loader)

    async def stats(self) -> dict[str, Any]:
        """Counters of this service plus its target's breaker, journal and memory figures."""
        return self._stats()

    async def aclose(self) -> None:
        # unasync: sync-only begin
        # """Close the pooled connections of this service's target (shared with others)."""
        # unasync: sync-only end
        # unasync: async-only begin
        """Close this event loop's connections of the service's target (shared with others)."""
        # unasync: async-only end
        await self._target.aclose()

    # unasync: async-only begin
    async def __aenter__(self) -> AsyncCacheService:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


# Ready-made services of the usage contract, awaitable; they follow REDIS_URL, are made on
# first use (not at import: a service fixes its location's options for the process, see
# ``instances``) and connect on first use (per event loop). A bad REDIS_URL raises its
# ConfigurationError on first use, not at import.
if typing.TYPE_CHECKING:
    api_cache: AsyncCacheService
    user_cache: AsyncCacheService
    session_cache: AsyncCacheService


def __getattr__(name: str) -> AsyncCacheService:
    """Make the ready-made service ``name`` once, on first use."""
    return make_once(globals(), __name__, name, AsyncCacheService)
# unasync: async-only end
