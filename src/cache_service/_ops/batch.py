"""``get_many`` and ``set_many``: many keys in one round trip (generator operations).

One ``MGET``, or one non-transactional pipeline of ``SET … PX``, on every topology: a
cluster client splits it by slot and sends one pipeline per node, so when a node hangs a
call costs at most one socket timeout, then the breaker opens and the memory store serves.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from cache_service._host.breaker import Gate
from cache_service._ops import read, write
from cache_service._ops.context import MISSING, TTL, OpContext
from cache_service._ops.loading import SWR_MARK
from cache_service._ops.protocol import Op, Unavailable
from cache_service._ops.read import Discard
from cache_service._ops.requests import MGet, PipelineSet, Script
from cache_service._ops.scripts import DROP_IF_SAME
from cache_service._ops.tags import Tagged, memory_tokens, validate_tags, wrap
from cache_service._ops.write import kept
from cache_service.codec import HEADER_SIZE, PLAIN_HEADER, STAMPER, pack
from cache_service.config import ttl_seconds
from cache_service.errors import ConfigurationError
from cache_service.keys import MAX_KEY_LENGTH
from cache_service.notices import unservable
from cache_service.stats import add

__all__ = ["MAX_BATCH", "get_many", "set_many"]

MAX_BATCH = 10_000  # keys per get_many / set_many call
_PLAIN = PLAIN_HEADER

def _full_keys(ctx: OpContext, keys: object) -> tuple[list[str], list[str]]:
    """``(keys, full keys)``, aligned, each validated (at most MAX_BATCH), deduplicated."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise ConfigurationError(
            f"get_many takes an iterable of str keys, not {type(keys).__name__}")
    names = keys if type(keys) is list else list(keys)
    if len(names) > MAX_BATCH:
        raise ConfigurationError(f"at most {MAX_BATCH} keys per call, got {len(names)}")
    head = ctx.keys.head
    try:  # the common case at C speed; anything unusual is looked at key by key
        full = [head + k for k in names]
        sound = not names or ("" not in names and max(map(len, names)) <= MAX_KEY_LENGTH
                              and all(map(str.isascii, names)))
    except TypeError:
        sound = False
    if not sound:  # a key to refuse (raises), or a str subclass
        full = [ctx.keys.full(k) for k in names]
    if len(set(names)) != len(names):  # read each key once
        names = list(dict.fromkeys(names))
        full = list(dict.fromkeys(full))
    return names, full


def get_many(ctx: OpContext, keys: Iterable[str]) -> Op[dict[str, Any]]:
    """``{key: value}`` for the hits among ``keys`` (misses are left out)."""
    names, full = _full_keys(ctx, keys)
    found: dict[str, Any] = {}
    if not names:
        return found
    t = ctx.target
    if t.gate() is Gate.REDIS:  # one MGET (a cluster client splits it: per node)
        try:
            raws = yield MGet(tuple(full))
            yield from _settle(ctx, full, names, raws, found)
            return found
        except Unavailable:
            pass
    c = ctx.counters
    for k, name in zip(full, names, strict=True):
        value = read.from_memory(ctx, k, MISSING, False, c)
        if value is not MISSING:
            found[name] = value
    return found


def _settle(ctx: OpContext, group: list[str], names: list[str], raws: list[Any],
            found: dict[str, Any]) -> Op[None]:
    """Decode one MGET reply into ``found``: a tight loop for plain JSON payloads, the
    single-key rules (``_from_redis``) for everything else."""
    c = ctx.counters
    t = ctx.target
    # late-write tombstones to check (for a while after a recovery): the single-key rules
    fast = ctx.plain and not t.guard.until
    loads = orjson.loads
    discards: list[tuple[str, str | None]] = []
    tagged: list[tuple[str, Tagged]] = []
    rest: list[tuple[str, str, bytes]] = []
    hits = opened = 0
    if fast:
        for k, name, raw in zip(group, names, raws, strict=True):
            # plain JSON of ours (header C5 01 01) decodes here
            if raw is not None:
                if raw[:3] == _PLAIN:
                    try:
                        value = loads(raw[HEADER_SIZE:])
                    except orjson.JSONDecodeError:
                        pass
                    else:
                        if type(value) is list and len(value) == 4 and value[0] == SWR_MARK:
                            opened += 1  # a stale-while-revalidate envelope: counted there
                            value = read.opened(ctx, value, raw, MISSING, False, c)
                            if value is not MISSING:
                                found[name] = value
                        else:
                            found[name] = value
                            hits += 1
                        continue
                rest.append((k, name, raw))
    else:
        rest = [(k, name, raw) for k, name, raw in zip(group, names, raws, strict=True)
                if raw is not None]
    misses = len(group) - hits - opened - len(rest)
    for k, name, raw in rest:
        result = read.from_redis(ctx, k, raw, MISSING, False, c)
        if type(result) is Discard:
            discards.append((k, result.why))
        elif type(result) is Tagged:
            tagged.append((name, result))
        elif result is not MISSING:
            found[name] = result
    add(c.hits, hits)
    add(c.misses, misses + len(discards))
    if tagged:
        yield from _settle_tagged(ctx, tagged, found)
    if discards:
        for k, why in discards:
            if why is not None:
                next(t.counters.corrupt)
                unservable(ctx.location.describe(), "corrupt", k, why)
        with contextlib.suppress(Unavailable):
            yield from t.unlink_keys([k for k, _ in discards])


def _settle_tagged(ctx: OpContext, tagged: list[tuple[str, Tagged]],
                   found: dict[str, Any]) -> Op[None]:
    """Check the tokens of every tagged hit with one MGET (tag keys share one slot)."""
    c = ctx.counters
    tag_keys = list(dict.fromkeys(k for _, item in tagged for k in ctx.tag_keys(item.tags)))
    stored = dict(zip(tag_keys, (yield MGet(tuple(tag_keys))), strict=True))
    for name, item in tagged:
        if item.current([stored[k] for k in ctx.tag_keys(item.tags)]):
            result = read.from_redis(ctx, item.key, item.plain, MISSING, False, c)
            if result is not MISSING and type(result) is not Discard:
                found[name] = result
                continue
        next(c.misses)
        with contextlib.suppress(Unavailable):
            yield Script(DROP_IF_SAME, (item.key,), (item.raw,))


def set_many(ctx: OpContext, mapping: Mapping[str, Any], ttl: TTL = None,
             tags: object = ()) -> Op[None]:
    """Store every ``key: value`` of ``mapping`` for ``ttl``; every value is encoded (and
    every key checked) before anything is written."""
    if not isinstance(mapping, Mapping):
        raise ConfigurationError(
            f"set_many takes a mapping of key -> value, not {type(mapping).__name__}")
    if len(mapping) > MAX_BATCH:
        raise ConfigurationError(f"at most {MAX_BATCH} keys per call, got {len(mapping)}")
    tag_names = validate_tags(tags) if tags else ()
    seconds = ctx.default_ttl if ttl is None else ttl_seconds(ttl)
    px = max(1, math.ceil(seconds * 1000))
    stamp = STAMPER.next()  # one write: one stamp for all of it
    head, codec, limit = ctx.keys.full, ctx.codec, ctx.max_value_bytes
    items = []
    for key, value in mapping.items():
        k = head(key)
        items.append((k, pack(codec, value, k, limit, stamp), value))
    if not items:
        return
    add(ctx.counters.sets, len(items))
    t = ctx.target
    keys = [k for k, _, _ in items]
    tag_keys = ctx.tag_keys(tag_names)

    def remote() -> Op[None]:
        pairs = [(k, payload) for k, payload, _ in items]
        if tag_keys:
            tokens = yield from write.tag_tokens(ctx, tag_keys, px)
            pairs = [(k, wrap(payload, tag_names, tokens)) for k, payload in pairs]
        yield PipelineSet(tuple(pairs), px)  # a cluster client: one pipeline per node

    def local() -> None:
        next(t.counters.memory_writes)
        memory = t.fallback
        if tag_keys:
            tokens = memory_tokens(memory, tag_keys, seconds)
            for k, payload, _ in items:
                memory.set(k, wrap(payload, tag_names, tokens), seconds)
            return
        for k, payload, value in items:
            memory.set(k, payload, seconds, kept(codec, value, payload, k))

    yield from write.write_or_journal(ctx, remote, local, keys=keys, refused=None, overwrites=True)
