"""CacheService: the blocking API of the usage contract."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from math import ceil
from time import perf_counter
from typing import Any

from . import batch, counters, flows, keyops
from ._ops import read, write
from ._ops.read import Discard
from .breaker import Gate
from .core import TTL, ServiceCore
from .host import GEN, NEAR_USED, key_slot
from .keys import MAX_KEY_LENGTH, validate_key
from .loading import load_policy
from .near import MISS
from .redis_backend import CONNECTIVITY_ERRORS, OUTAGES, classify_error, drop_idle
from .tags import Tagged

__all__ = ["CacheService"]


class CacheService(ServiceCore):
    """A namespaced cache on Redis that falls back to a bounded in-memory store.

    Calls never raise because Redis is down or slow: a circuit breaker sends them to the
    memory store at once and moves back to Redis by itself, replaying what was invalidated
    meanwhile. Bad input (keys, TTLs, unserialisable values) raises before anything is written.
    """

    def get(self, key: str, default: Any = None) -> Any:
        """The cached value for ``key`` (a fresh copy), or ``default`` on a miss."""
        # Fast path for the common cases (``AsyncCacheService.get`` has its twin, sharing
        # ``_reply``); everything else goes to the ``_get`` operation: suspending a generator
        # around a blocking GET costs ~5% of the call, and each Python frame between the
        # caller and redis-py ~1% (counted with callgrind).
        ctx = self._ctx
        t = ctx.target
        if ctx.near is not None:
            found = read.near_hit(ctx, key)
            return found if found is not MISS else t.run(read.get(ctx, key, default, looked=True))
        # ``t.gate()`` inlined for its common case: the page's generation (slot 0) is the one
        # this process last saw with the breaker closed.
        if t._page[GEN] == t._closed_gen or t.gate() is Gate.REDIS:
            if type(key) is not str or not key or len(key) > MAX_KEY_LENGTH \
                    or not key.isascii():
                key = validate_key(key)
            k = ctx.head + key
            # 1 in 16 of these is timed and counts 16 times: the clock and the histogram
            # would cost ~1% of a hit. The slow paths below are timed by ``t.run``.
            timed = next(t.get_ticks) & 15 == 0
            if timed:
                started = perf_counter()
            client = t._client or t.sync_client()
            try:
                raw = client.get(k)
            except CONNECTIVITY_ERRORS as exc:
                kind = classify_error(exc, t.location.kind)
                if kind == "broken":  # ``_get``'s request is the one retry
                    drop_idle(client)
                elif kind in OUTAGES:  # an error reply: ``_get`` meets it and accounts it
                    t.failed(exc)  # opens the breaker
                return t.run(read.get(ctx, key, default))
            result = read.reply(ctx, k, raw, default)
            if type(result) is Discard:
                return t.run(read.discard(ctx, k, result.why, default, ctx.counters))
            if type(result) is Tagged:  # the one extra check an untagged hit pays
                return t.run(read.check_tagged(ctx, result, default, False, ctx.counters))
            if timed:
                t.get_latency.record(perf_counter() - started, 16)
            return result
        return read.from_memory(ctx, ctx.keys.full(key), default, False, ctx.counters)

    def set(self, key: str, value: Any, ttl: TTL = None, *,
            tags: Iterable[str] = ()) -> None:
        """Cache ``value`` for ``ttl`` seconds (``None``: the service's default TTL), with
        ``tags`` (see ``invalidate_tags``)."""
        ctx = self._ctx
        t = ctx.target
        if tags or t._page[GEN] != t._closed_gen:  # tagged, or not known to be on Redis
            t.run(write.put(ctx, key, value, ttl, tags=tags))
            return
        # Fast path (like get's): an untagged SET with no generator around it.
        started = perf_counter()
        k, payload, seconds, value = write.encode(ctx, key, value, ttl)
        client = t._client or t.sync_client()
        try:
            client.set(k, payload, px=max(1, ceil(seconds * 1000)))
        except CONNECTIVITY_ERRORS as exc:
            kind = classify_error(exc, t.location.kind)
            if kind == "broken":  # ``_store``'s request is the one retry
                drop_idle(client)
            elif kind in OUTAGES:  # an error reply: ``_store`` meets it and accounts it
                t.failed(exc)
            t.run(write.put_encoded(ctx, k, payload, seconds, value))  # Redis, or the fallback
            return
        # ``t.written([k], None)`` inlined: the key's slot on the host page moves (once the
        # host has a near cache), and this process's near copy goes
        page = t._page
        if page[NEAR_USED]:
            page[key_slot(k)] += 1
        if t.near is not None:
            t.near.invalidate((k,))
        t.set_latency.record(perf_counter() - started)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the keys that hit (one MGET; per slot on Cluster)."""
        return self._target.run(batch.get_many(self._ctx, keys))

    def set_many(self, mapping: Mapping[str, Any], ttl: TTL = None, *,
                 tags: Iterable[str] = ()) -> None:
        """Cache every ``key: value`` of ``mapping`` (one pipeline); all values are encoded
        before anything is written."""
        self._target.run(batch.set_many(self._ctx, mapping, ttl, tags))

    def add(self, key: str, value: Any, ttl: TTL = None, *, tags: Iterable[str] = ()) -> bool:
        """Cache ``value`` only if ``key`` holds no live value; True if stored."""
        return self._target.run(keyops.add(self._ctx, key, value, ttl, tags))

    def incr(self, key: str, delta: int = 1, ttl: TTL = None) -> int:
        """Add ``delta`` to the int at ``key`` atomically (absent: 0, given ``ttl``); the result."""
        return self._target.run(counters.incr(self._ctx, key, delta, ttl))

    def decr(self, key: str, delta: int = 1, ttl: TTL = None) -> int:
        """Subtract ``delta`` from the int at ``key`` atomically; the result."""
        return self._target.run(counters.decr(self._ctx, key, delta, ttl))

    def touch(self, key: str, ttl: TTL = None) -> bool:
        """Give ``key``'s value a new TTL (``None``: the default TTL); False if absent."""
        return self._target.run(keyops.touch(self._ctx, key, ttl))

    def ttl(self, key: str) -> float | None:
        """Seconds ``key``'s value has left, or ``None`` if absent."""
        return self._target.run(keyops.ttl(self._ctx, key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live value of ours."""
        return self._target.run(keyops.exists(self._ctx, key))

    def invalidate_tags(self, *tags: str) -> None:
        """Every value written with any of ``tags`` is a miss from now on, in every process."""
        self._target.run(write.invalidate_tags(self._ctx, tags))

    def delete(self, *keys: str) -> int:
        """Remove ``keys``; returns how many existed."""
        return self._target.run(write.delete(self._ctx, keys))

    def invalidate_pattern(self, pattern: str) -> int:
        """Remove this service's keys matching the Redis glob ``pattern``; returns the count."""
        return self._target.run(write.invalidate_pattern(self._ctx, pattern))

    def clear_all(self) -> int:
        """Remove every key of this service's prefix (and nothing else); returns the count."""
        return self._target.run(write.clear_all(self._ctx))

    def is_redis_available(self) -> bool:
        """Whether calls go to Redis now; blocks at most one connect timeout."""
        return self._target.run(read.is_available(self._ctx))

    def get_or_set(
        self, key: str, loader: Callable[[], Any], ttl: TTL = None, *, cache_none: bool = False,
        jitter: float = 0.0, lock: bool = False, lock_ttl: float = 10.0, lock_wait: float = 5.0,
        stale_while_revalidate: float = 0.0, stale_if_error: float | None = None,
        tags: Iterable[str] = (),
    ) -> Any:
        """The cached value for ``key``, or ``loader()``'s result, cached for ``ttl``.

        A cached falsy value is a hit. Concurrent misses of one key run ``loader`` once in this
        process (the others wait and share its value or exception; nothing is cached on an
        exception); ``lock=True`` also makes other processes wait for it (up to ``lock_wait``
        seconds) through a Redis lock that expires after ``lock_ttl``. ``None`` is cached only
        with ``cache_none``. ``jitter`` shortens the TTL by up to that fraction at random.
        ``stale_while_revalidate=S`` serves the expired value for S seconds while one caller
        reloads it; ``stale_if_error=E`` (default: S) serves it up to E seconds past expiry
        when the loader raises.
        """
        return self._target.run(flows.get_or_set(self._ctx, key, ttl, load_policy(
            cache_none=cache_none, jitter=jitter, lock=lock, lock_ttl=lock_ttl,
            lock_wait=lock_wait, stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error), task=None, tags=tags), loader)

    def stats(self) -> dict[str, Any]:
        """Counters of this service plus its target's breaker, journal and memory figures."""
        return self._stats()

    def close(self) -> None:
        """Close the pooled connections of this service's target (shared with others)."""
        self._target.close()
