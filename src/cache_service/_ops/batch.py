"""``get_many`` and ``set_many``: many keys in one round trip (generator operations).

One ``MGET``, or one non-transactional pipeline of ``SET … PX``, on every topology: a
cluster client splits it by slot and sends one pipeline per node, so when a node hangs a
call costs at most one socket timeout, then the breaker opens and the memory store serves.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from itertools import compress, repeat
from operator import is_not, itemgetter
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
_PLAIN_SIZE = len(PLAIN_HEADER)
_BODY_OF = itemgetter(slice(HEADER_SIZE, None))  # a payload's body

def _full_keys(ctx: OpContext, keys: object) -> tuple[list[str], list[str]]:
    """``(keys, full keys)``, aligned, each validated (at most MAX_BATCH). A key given twice
    stays twice (MGET reads it twice; ``_settle`` counts it once): a set of the keys would
    cost ~2 % of a get_many(100) that the common reply does not need."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise ConfigurationError(
            f"get_many takes an iterable of str keys, not {type(keys).__name__}")
    names = keys if type(keys) is list else list(keys)
    if len(names) > MAX_BATCH:
        raise ConfigurationError(f"at most {MAX_BATCH} keys per call, got {len(names)}")
    head = ctx.keys.head
    n = len(names)
    try:  # the common case at C speed: every key with the head in front, NUL between them
        # (the head, a validated prefix, holds none), then checked all at once: ASCII (no lone
        # surrogate), no empty key, no NUL in a key, and (when short in total) no long key
        joined = head + ("\x00" + head).join(names)
        sound = joined.isascii() and all(names) and joined.count("\x00") == n - 1 and (
            len(joined) - n * (len(head) + 1) < MAX_KEY_LENGTH
            or max(map(len, names)) <= MAX_KEY_LENGTH)
    except TypeError:  # a key that is not a str
        sound = False
    # else (NUL, not ASCII, long, not a str, none): the single-key rules, which may refuse it
    full = joined.split("\x00") if sound else [ctx.keys.full(k) for k in names]
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
    for k, name in dict(zip(full, names, strict=True)).items():  # each key once
        value = read.from_memory(ctx, k, MISSING, False, c)
        if value is not MISSING:
            found[name] = value
    return found


def _settle(ctx: OpContext, group: list[str], names: list[str], raws: list[Any],
            found: dict[str, Any]) -> Op[None]:
    """Decode one MGET reply into ``found``: plain JSON payloads here, the single-key rules
    (``from_redis``) for everything else."""
    c = ctx.counters
    t = ctx.target
    # late-write tombstones to check (for a while after a recovery): the single-key rules
    fast = ctx.plain and not t.guard.until
    values = _plain_values(raws) if fast else None
    if values is not None and len(values) == len(raws) and list not in set(map(type, values)):
        before = len(found)  # every key a plain JSON hit (the common reply)
        found.update(zip(names, values, strict=True))
        add(c.hits, len(found) - before)  # a key given twice is one hit
        return
    if len(set(group)) != len(group):  # each key once from here on
        group, names, raws, values = _once(group, names, raws)
    if fast:
        hits, opened, rest = _decode_plain(ctx, group, names, raws, values, found)
    else:
        hits = opened = 0
        rest = [(k, name, raw) for k, name, raw in zip(group, names, raws, strict=True)
                if raw is not None]
    misses = len(group) - hits - opened - len(rest)
    discards: list[tuple[str, str | None]] = []
    tagged: list[tuple[str, Tagged]] = []
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


Rest = list[tuple[str, str, bytes]]  # (full key, key, payload) for the single-key rules


def _once(group: list[str], names: list[str], raws: list[Any]
          ) -> tuple[list[str], list[str], list[Any], None]:
    """An MGET reply with each key once (a key given twice was read twice), its values
    to decode again."""
    first: dict[str, tuple[str, Any]] = {}
    for k, name, raw in zip(group, names, raws, strict=True):
        first.setdefault(k, (name, raw))
    return list(first), [name for name, _ in first.values()], [
        raw for _, raw in first.values()], None


def _decode_plain(ctx: OpContext, group: list[str], names: list[str], raws: list[Any],
                  values: list[Any] | None, found: dict[str, Any]) -> tuple[int, int, Rest]:
    """Plain JSON payloads of an MGET reply into ``found``: ``(hits, envelopes opened, the
    other payloads)``. ``values``: the reply's hits decoded in passes with no Python frame
    per key (~0.1 µs a key less than a loop) when every one is plain JSON; else they are
    decoded here key by key."""
    if values is None:
        values = _plain_values(raws)
    if values is None:
        return _decode_each(ctx, group, names, raws, found)
    payloads = raws
    if len(values) != len(raws):  # the misses out, to line up with the values
        names = list(compress(names, map(is_not, raws, repeat(None))))
        payloads = _hits(raws)
    if list not in set(map(type, values)):
        found.update(zip(names, values, strict=True))
        return len(values), 0, []
    hits = opened = 0  # lists: perhaps stale-while-revalidate envelopes
    for name, raw, value in zip(names, payloads, values, strict=True):
        if type(value) is list and len(value) == 4 and value[0] == SWR_MARK:
            opened += 1  # counted there
            served = read.opened(ctx, value, raw, MISSING, False, ctx.counters)
            if served is not MISSING:
                found[name] = served
        else:
            found[name] = value
            hits += 1
    return hits, opened, []


def _decode_each(ctx: OpContext, group: list[str], names: list[str], raws: list[Any],
                 found: dict[str, Any]) -> tuple[int, int, Rest]:
    """``_decode_plain`` key by key, for a reply with payloads of other kinds."""
    c = ctx.counters
    loads = orjson.loads
    hits = opened = 0
    rest: Rest = []
    for k, name, raw in zip(group, names, raws, strict=True):
        if raw is None:
            continue
        if raw[:3] == _PLAIN:  # plain JSON of ours (header C5 01 01)
            try:
                value = loads(raw[HEADER_SIZE:])
            except orjson.JSONDecodeError:
                pass
            else:
                if type(value) is list and len(value) == 4 and value[0] == SWR_MARK:
                    opened += 1  # a stale-while-revalidate envelope: counted there
                    served = read.opened(ctx, value, raw, MISSING, False, c)
                    if served is not MISSING:
                        found[name] = served
                else:
                    found[name] = value
                    hits += 1
                continue
        rest.append((k, name, raw))
    return hits, opened, rest


def _hits(raws: list[Any]) -> list[Any]:
    """The payloads of an MGET reply, misses left out."""
    return list(compress(raws, map(is_not, raws, repeat(None))))


def _plain_values(raws: list[Any]) -> list[Any] | None:
    """The values of an MGET reply's hits when every one is plain JSON of ours (header
    C5 01 01) that orjson decodes, else None (the caller applies the single-key rules to
    each)."""
    hits = raws
    try:
        plain = _plain_run(hits)
    except TypeError:  # misses (None), or a reply that is not bytes
        hits = _hits(raws)
        if not hits:
            return hits
        try:
            plain = _plain_run(hits)
        except TypeError:
            return None
    if not plain:
        return None
    try:
        return list(map(orjson.loads, map(_BODY_OF, hits)))
    except orjson.JSONDecodeError:  # the single-key rules say what it is
        return None


def _plain_run(payloads: list[bytes]) -> bool:
    """Whether every payload starts with the plain JSON header: those that do are one run in
    byte order, so the least and the greatest tell (two C passes, no slice per payload)."""
    return bool(min(payloads)[:_PLAIN_SIZE] == _PLAIN and max(payloads)[:_PLAIN_SIZE] == _PLAIN)


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
