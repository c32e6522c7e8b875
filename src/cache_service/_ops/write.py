"""Writes as operations: set (plain or tagged), delete, pattern and tag invalidation, and
the one rule every write follows (``write_or_journal``): on Redis while it is in use, else on
the fallback store with an entry in the outage journal, replayed once Redis is back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from cache_service._host.breaker import Gate
from cache_service._host.memory_store import NO_VALUE
from cache_service._ops.context import TTL, OpContext
from cache_service._ops.loading import SWR_MARK, jittered
from cache_service._ops.protocol import Op, ReplyError, Unavailable
from cache_service._ops.requests import Script, Set
from cache_service._ops.scripts import SET_UNLESS_FOREIGN
from cache_service._ops.tags import (
    MAX_INVALIDATE,
    TOKENS,
    drop_memory_tokens,
    memory_tokens,
    tag_ttl_ms,
    validate_tags,
    wrap,
)
from cache_service._ops.tags import new_token as new_tag_token
from cache_service.codec import (
    MAGIC,
    STAMPER,
    Codec,
    pack,
    unpack,
)
from cache_service.config import ttl_seconds
from cache_service.copies import IMMUTABLE, Kept, copy_plan
from cache_service.stats import add

__all__ = ["KEEP_DECODED", "clear_all", "delete", "drop_refused", "encode", "invalidate",
           "invalidate_pattern", "invalidate_tags", "kept", "put", "put_encoded",
           "put_tagged", "tag_tokens", "write_or_journal"]

R = TypeVar("R")

# Values the memory store keeps decoded beside their payload, up to this payload size.
KEEP_DECODED = 1024


def kept(codec: Codec, value: Any, payload: bytes, k: str) -> Any:
    """What the memory store keeps decoded beside ``payload`` (a value up to
    ``KEEP_DECODED`` bytes of payload), so that a memory ``get`` needs no decode: an
    immutable value as it is; a dict or list of them (nested as you like) decoded from the
    payload — never the caller's object, which they may mutate after ``set`` — as a
    ``Kept`` that ``get`` copies; otherwise ``NO_VALUE``."""
    t = type(value)
    if len(payload) > KEEP_DECODED:
        return NO_VALUE
    if t in IMMUTABLE:
        return value
    if t is not dict and t is not list:
        return NO_VALUE
    decoded = unpack(codec, payload, k)
    if type(decoded) is not dict and type(decoded) is not list:
        return NO_VALUE
    plan = copy_plan(decoded)
    return NO_VALUE if plan is None else Kept(decoded, plan)


def put(ctx: OpContext, key: str, value: Any, ttl: TTL, keep_stale: float = 0.0,
        jitter: float = 0.0, *, tags: object = (), polite: bool = False,
        wrap: bool = False) -> Op[None]:
    """Store ``value``; ``jitter`` shortens the TTL by up to that fraction at random;
    ``keep_stale`` keeps it that much longer wrapped with its freshness (get_or_set SWR;
    ``wrap``: wrapped even with no ``keep_stale``, for eager refresh); ``tags``: see
    ``_ops.tags``; ``polite``: never over a foreign key (get_or_set's fill)."""
    tagged = validate_tags(tags) if tags else ()
    k, payload, seconds, value = encode(ctx, key, value, ttl, keep_stale, jitter, wrap)
    px = max(1, math.ceil(seconds * 1000))
    if tagged:
        yield from put_tagged(ctx, k, payload, seconds, px, tagged, polite=polite)
        return
    yield from put_encoded(ctx, k, payload, seconds, value, polite=polite)


def encode(ctx: OpContext, key: str, value: Any, ttl: TTL, keep_stale: float = 0.0,
           jitter: float = 0.0, wrap: bool = False) -> tuple[str, bytes, float, Any]:
    """Validate and encode a set (raises before anything is written) and count it:
    ``(redis key, payload, seconds, the value as stored)``."""
    k = ctx.keys.full(key)
    seconds = ctx.default_ttl if ttl is None else ttl_seconds(ttl)
    if jitter:
        seconds = jittered(seconds, jitter)
    stamp = STAMPER.next()
    if keep_stale or wrap:
        value = [SWR_MARK, stamp, ctx.wall() + seconds, value]
        seconds += keep_stale
    payload = pack(ctx.codec, value, k, ctx.max_value_bytes, stamp)
    next(ctx.counters.sets)
    return k, payload, seconds, value


def put_encoded(ctx: OpContext, k: str, payload: bytes, seconds: float, value: Any, *,
                polite: bool = False) -> Op[None]:
    """Write an encoded, untagged value: on Redis, or on the fallback while it is out
    (``polite``: on Redis only if no foreign key is there)."""
    px = max(1, math.ceil(seconds * 1000))

    def remote() -> Op[None]:  # the request is built only when Redis is asked
        if polite:
            yield Script(SET_UNLESS_FOREIGN, (k,), (payload, px, MAGIC))
        else:
            yield Set(k, payload, px)

    def local() -> None:
        decoded = kept(ctx.codec, value, payload, k)
        next(ctx.target.counters.memory_writes)
        ctx.target.fallback.set(k, payload, seconds, decoded)

    yield from write_or_journal(ctx, remote, local, keys=[k], refused=None, overwrites=True)


def delete(ctx: OpContext, keys: tuple[str, ...]) -> Op[int]:
    ks = [ctx.keys.full(k) for k in keys]
    if not ks:
        return 0
    add(ctx.counters.deletes, len(ks))
    removed: int = yield from write_or_journal(ctx,
        lambda: ctx.target.unlink_keys(ks), lambda: ctx.target.fallback_invalidate(ks),
        keys=ks, refused=0, removes=True)
    return removed


def invalidate(ctx: OpContext, pattern: str) -> Op[int]:
    next(ctx.counters.invalidations)
    t = ctx.target
    return (yield from write_or_journal(ctx,
        lambda: t.scan_unlink(pattern), lambda: t.fallback_invalidate(pattern=pattern),
        pattern=pattern, refused=0, removes=True))


def invalidate_pattern(ctx: OpContext, glob: str) -> Op[int]:
    return invalidate(ctx, ctx.keys.pattern(glob))


def clear_all(ctx: OpContext) -> Op[int]:
    return invalidate(ctx, ctx.keys.all_pattern)


def write_or_journal(ctx: OpContext, remote: Callable[[], Op[R]], local: Callable[[], R],
                     keys: list[str] | None = None, pattern: str | None = None, *,
                     refused: R, overwrites: bool = False, removes: bool = False) -> Op[R]:
    """Apply a write on Redis, or on memory with a journal entry while Redis is out.

    When Redis refuses it with an error reply (OOM, NOPERM, BUSY...) the call returns
    ``refused``, nothing is journaled and the breaker stays; a write that ``overwrites``
    ``keys`` drops their old values (UNLINK works under OOM), so none is served; when
    that UNLINK is refused too for a state that ends by itself (BUSY, LOADING), the write
    is journaled as in an outage. A removal (``removes``) refused by any reply but a
    denial (NOPERM: named in ``stats()``) is journaled likewise: what it removes must not
    be served once Redis accepts writes again."""
    t = ctx.target
    while True:
        if t.gate(writing=True) is Gate.REDIS:
            reached = True
            try:
                result = yield from remote()
            except ReplyError as error:
                result = refused
                if overwrites:  # False: Redis went away meanwhile, journal it
                    reached = yield from drop_refused(ctx, keys or [])
                elif removes and error.kind == "reply":
                    t.refused_twice(error)
                    reached = False
            except Unavailable:
                reached = False
            if reached:
                if t.breaker.is_open:  # draining: readers are still on memory
                    t.fallback_invalidate(keys, pattern)
                t.written(keys, pattern)
                return result
        applied = t.offline(keys, pattern, STAMPER.next(), local)
        if applied is not None:
            t.written(keys, pattern)
            return applied[0]


def drop_refused(ctx: OpContext, keys: list[str]) -> Op[bool]:
    """UNLINK the keys of a write Redis refused; False when the write must be journaled
    instead: Redis became unreachable, or refused the UNLINK too for a state that ends
    by itself (BUSY, LOADING). A refusal only a setting fixes (NOPERM) is named in
    ``stats()``; an unencodable key has no old value."""
    try:
        yield from ctx.target.unlink_keys(keys)
    except ReplyError as again:
        if again.kind == "reply":
            ctx.target.refused_twice(again)
            return False
    except Unavailable:
        return False
    return True


def tag_tokens(ctx: OpContext, keys: list[str], px: int) -> Op[list[bytes]]:
    """The current tokens of tag ``keys`` on Redis, creating missing ones and keeping
    each at least ``px`` ms (plus a margin): one script on the prefix's tag slot."""
    tokens: list[bytes] = yield Script(TOKENS, tuple(keys),
                                       (tag_ttl_ms(px), *(new_tag_token() for _ in keys)))
    return tokens


def put_tagged(ctx: OpContext, k: str, payload: bytes, seconds: float, px: int,
               tags: tuple[str, ...], *, polite: bool = False) -> Op[None]:
    """Store a tagged value: read (or create) its tags' tokens, then SET it with them."""
    tag_keys = ctx.tag_keys(tags)
    t = ctx.target

    def remote() -> Op[None]:
        tokens = yield from tag_tokens(ctx, tag_keys, px)
        stored = wrap(payload, tags, tokens)
        yield (Script(SET_UNLESS_FOREIGN, (k,), (stored, px, MAGIC)) if polite
               else Set(k, stored, px))

    def local() -> None:
        next(t.counters.memory_writes)
        t.fallback.set(k, wrap(payload, tags, memory_tokens(t.fallback, tag_keys, seconds)),
                     seconds)

    yield from write_or_journal(ctx, remote, local, keys=[k], refused=None, overwrites=True)


def invalidate_tags(ctx: OpContext, tags: tuple[object, ...]) -> Op[None]:
    """Every value written with one of ``tags`` is a miss from now on: their tag keys
    are dropped (journaled while Redis is out, like any delete)."""
    keys = ctx.tag_keys(validate_tags(tags, MAX_INVALIDATE))
    if not keys:
        return
    next(ctx.counters.invalidations)
    t = ctx.target
    yield from write_or_journal(ctx, lambda: t.unlink_keys(keys),
                           lambda: drop_memory_tokens(lambda: t.fallback_invalidate(keys)),
                           keys=keys, refused=None, removes=True)
