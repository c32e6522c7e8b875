"""Reads as operations: ``get`` and what a GET reply, a memory-store entry or a near-cache
entry means (a value, a miss, a stale value, a payload to discard, a tagged value to check).

Every function takes the service's ``OpContext``; those that talk to Redis are generators
driven by ``Target.run``/``arun``, the others do no I/O and serve the get fast paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any

from orjson import JSONDecodeError, loads

from cache_service._host.breaker import Gate
from cache_service._host.memory_store import NO_VALUE
from cache_service._near.store import MISS
from cache_service._ops.context import OpContext
from cache_service._ops.loading import SWR_MARK, Fresh, Stale
from cache_service._ops.protocol import Op, ReplyError, Unavailable, WrongType
from cache_service._ops.requests import Get, MGet, Script
from cache_service._ops.scripts import DROP_IF_SAME, GET_WITH_PTTL
from cache_service._ops.tags import (
    Tagged,
    is_tagged,
    open_tagged,
    stored_tokens,
)
from cache_service.codec import (
    HEADER_SIZE,
    PLAIN_HEADER,
    VIEW_FROM,
    CorruptPayload,
    stamp_of,
    unpack,
)
from cache_service.copies import Kept
from cache_service.notices import unservable
from cache_service.stats import ServiceCounters

__all__ = ["Discard", "check_tagged", "decoder", "discard", "foreign", "from_memory",
           "from_redis", "get", "is_available", "opened", "reply"]


class Discard:
    """A GET reply that must not be served and must be removed; ``why`` is logged (None: a
    known late write of ours, not worth a warning)."""

    __slots__ = ("why",)

    def __init__(self, why: str | None) -> None:
        self.why = why


def get(ctx: OpContext, key: str, default: Any, counters: ServiceCounters | None = None,
        stale: int = False, looked: bool = False) -> Op[Any]:
    """The value at ``key`` or ``default``; with ``stale``, a value kept past its
    freshness for stale-while-revalidate comes back as a ``Stale`` (and with ``stale=2``
    one stored with its freshness and still fresh as a ``Fresh``). ``looked``: the near
    cache was already asked."""
    c = ctx.counters if counters is None else counters
    k = ctx.keys.full(key)
    t = ctx.target
    if t.gate() is Gate.REDIS:
        near = ctx.near
        token = None
        if near is not None and not stale:  # stale reads are SWR envelopes: never near
            if not looked:
                found = near.lookup(k)
                if found is not MISS:
                    next(c.hits)
                    return found
            next(near.misses)
            token = near.begin(k)
            if token is None:
                t.tracker.ensure_running()  # type: ignore[union-attr]
        try:
            if token is None:
                raw = yield Get(k)
            else:
                raw, ttl_ms = yield Script(GET_WITH_PTTL, (k,), ())
        except ReplyError:  # refused (BUSY, LOADING, NOPERM...): a miss, Redis stays
            next(c.misses)
            return default
        except Unavailable:
            pass
        except WrongType:  # a foreign key of another Redis type: a miss, left alone
            foreign(ctx, k, "a Redis value of another type")
            next(c.misses)
            return default
        else:
            keep = None if token is None else partial(
                near.store, k, token, ttl_ms=ttl_ms, decode=decoder(ctx, k))  # type: ignore[union-attr]
            result = from_redis(ctx, k, raw, default, stale, c, keep=keep)
            if type(result) is Discard:
                return (yield from discard(ctx, k, result.why, default, c))
            if type(result) is Tagged:
                return (yield from check_tagged(ctx, result, default, stale, c))
            return result
        finally:
            if token is not None:
                near.abandon(k, token)  # type: ignore[union-attr]
    return from_memory(ctx, k, default, stale, c)


def reply(ctx: OpContext, k: str, raw: bytes | None, default: Any) -> Any:
    """What a GET reply means to the get fast paths: the value or ``default`` (counted),
    or a ``Discard``/``Tagged`` for the caller's driver to finish. A plain JSON hit is
    decoded here with no frame per step (each costs ~1% of a loopback hit)."""
    if ctx.plain and raw is not None and not ctx.target.guard.until:
        if raw[:3] == PLAIN_HEADER:
            try:  # a large body through a view: copying 44 KB costs 3% of parsing it
                value = loads(raw[HEADER_SIZE:] if len(raw) < VIEW_FROM
                              else memoryview(raw)[HEADER_SIZE:])
            except JSONDecodeError:  # the general rules below say what it is
                return from_redis(ctx, k, raw, default, False, ctx.counters)
        elif ctx.opener is not None:  # stages (msgpack, compression, encryption)
            try:
                value = ctx.opener(raw, k)
            except CorruptPayload as exc:
                return refused(ctx, k, raw, exc, default, ctx.counters)
        else:
            return from_redis(ctx, k, raw, default, False, ctx.counters)
        if type(value) is list:  # perhaps a stale-while-revalidate envelope
            return opened(ctx, value, raw, default, False, ctx.counters)
        next(ctx.counters.hits)
        return value
    return from_redis(ctx, k, raw, default, False, ctx.counters)


def decoder(ctx: OpContext, k: str) -> Callable[[bytes], Any]:
    codec = ctx.codec
    return lambda raw: unpack(codec, raw, k)


def from_redis(ctx: OpContext, k: str, raw: bytes | None, default: Any, stale: int,
               c: ServiceCounters, *, keep: Callable[[Any, bytes], None] | None = None
              ) -> Any:
    """What a GET reply means: the value, ``default`` on a miss (a foreign string is one,
    left alone), or a ``Discard`` when the payload must be removed (corrupt, or a late
    write of ours). No I/O. ``keep(value, raw)`` is told a plain value served (the near
    cache's fill)."""
    if raw is None:
        next(c.misses)
        return default
    try:
        value = unpack(ctx.codec, raw, k)
    except CorruptPayload as exc:
        return refused(ctx, k, raw, exc, default, c)
    t = ctx.target
    if t.guard.until and t.guard_blocks(k, stamp_of(raw)):
        return Discard(None)
    if type(value) is list:
        return opened(ctx, value, raw, default, stale, c, keep=keep)
    if keep is not None:
        keep(value, raw)
    next(c.hits)
    return value


def refused(ctx: OpContext, k: str, raw: bytes, exc: CorruptPayload, default: Any,
            c: ServiceCounters) -> Any:
    """What a payload the codec refused means: a tagged one to check, a ``Discard`` of a
    corrupt one, or a miss (foreign, or another service's codec), left alone."""
    if is_tagged(raw):  # the plain codec refuses it: untagged reads pay nothing
        return open_tagged(k, raw) or Discard("malformed tag section")
    if exc.remove:
        return Discard(str(exc))
    if exc.foreign:
        foreign(ctx, k, str(exc))
    next(c.misses)
    return default


def from_memory(ctx: OpContext, k: str, default: Any, stale: int, c: ServiceCounters) -> Any:
    """The memory store's value for ``k`` (a fresh copy), or ``default``. No I/O."""
    t = ctx.target
    next(t.counters.memory_reads)
    found = t.fallback.lookup(k)
    if found is not None:
        raw, kept = found
        if kept is not NO_VALUE:
            if type(kept) is Kept:  # a dict or list: the caller gets fresh containers
                kept = kept.fresh()
                if type(kept) is list:
                    return opened(ctx, kept, raw, default, stale, c)
            next(c.hits)
            return kept
        try:
            value = unpack(ctx.codec, raw, k)
        except CorruptPayload:  # written by a service with another codec, or tagged
            tagged = open_tagged(k, raw) if is_tagged(raw) else None
            if tagged is not None and tagged.current(
                    stored_tokens(t.fallback, ctx.tag_keys(tagged.tags))):
                with contextlib.suppress(CorruptPayload):
                    value = unpack(ctx.codec, tagged.plain, k)
                    if type(value) is list:
                        return opened(ctx, value, tagged.plain, default, stale, c)
                    next(c.hits)
                    return value
        else:
            if type(value) is list:
                return opened(ctx, value, raw, default, stale, c)
            next(c.hits)
            return value
    next(c.misses)
    return default


def opened(ctx: OpContext, value: list[Any], raw: bytes, default: Any, stale: int,
           c: ServiceCounters, *, keep: Callable[[Any, bytes], None] | None = None
          ) -> Any:
    """A decoded list: unwrap it if it is a stale-while-revalidate envelope of ours
    (never kept near: its freshness is not Redis' TTL)."""
    if len(value) == 4 and value[0] == SWR_MARK and value[1] == stamp_of(raw):
        if type(value[2]) is not float and type(value[2]) is not int:  # forged: a miss
            next(ctx.target.counters.corrupt)
            next(c.misses)
            return default
        if ctx.wall() >= value[2]:
            next(c.misses)
            return Stale(value[3], value[2]) if stale else default
        if stale == 2:  # the caller may refresh it early
            next(c.hits)
            return Fresh(value[3], value[2])
        value = value[3]
    elif keep is not None:
        keep(value, raw)
    next(c.hits)
    return value


def discard(ctx: OpContext, k: str, why: str | None, default: Any,
            c: ServiceCounters | None = None) -> Op[Any]:
    """A payload we cannot serve: log it (unless a known late write), remove it, miss."""
    next((ctx.counters if c is None else c).misses)
    if why is not None:
        next(ctx.target.counters.corrupt)
        unservable(ctx.location.describe(), "corrupt", k, why)
    with contextlib.suppress(Unavailable):
        yield from ctx.target.unlink_keys([k])
    return default


def foreign(ctx: OpContext, k: str, why: str) -> None:
    """Count (as ``corrupt``) and say, rate-limited, that ``k`` holds a value not ours."""
    next(ctx.target.counters.corrupt)
    unservable(ctx.location.describe(), "foreign", k, why)


def is_available(ctx: OpContext) -> Op[bool]:
    t = ctx.target
    if t.gate() is not Gate.REDIS:
        return False
    try:
        yield t.ping_request
    except ReplyError:  # reachable, though it refuses PING (NOPERM, LOADING...)
        return True
    except Unavailable:
        return False
    return True


def check_tagged(ctx: OpContext, tagged: Tagged, default: Any, stale: int,
                 c: ServiceCounters) -> Op[Any]:
    """Serve a tagged value read from Redis if its tags still hold its tokens (one MGET
    of tag keys, all in one cluster slot); a dead one is removed (if unchanged)."""
    k = tagged.key
    try:
        stored = yield MGet(tuple(ctx.tag_keys(tagged.tags)))
    except Unavailable:
        return from_memory(ctx, k, default, stale, c)
    if not tagged.current(stored):
        next(c.misses)
        with contextlib.suppress(Unavailable):
            yield Script(DROP_IF_SAME, (k,), (tagged.raw,))
        return default
    result = from_redis(ctx, k, tagged.plain, default, stale, c)
    if type(result) is Discard:
        return (yield from discard(ctx, k, result.why, default, c))
    return result
