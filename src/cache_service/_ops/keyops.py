"""``add``, ``touch``, ``ttl`` and ``exists``: one key, beyond get/set (generator operations).

Each is one round trip for untagged values. "Live" means what ``get`` would serve: a value
of ours that decodes, is not a known late write, and (if tagged) whose tags still hold its
tokens. A dead value (corrupt, invalidated by tag) counts as absent and is replaced by
``add``; a foreign key (another Redis type, or a string without our header) is never
modified: ``add`` returns False, ``incr`` raises ``NotAnIntegerError``.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from cache_service._host.breaker import Gate
from cache_service._ops import read, write
from cache_service._ops.context import MISSING, TTL, UNCOUNTED, OpContext
from cache_service._ops.protocol import Op, Unavailable, WrongType
from cache_service._ops.read import Discard
from cache_service._ops.requests import MGet, PExpire, Script, Set
from cache_service._ops.tags import (
    Tagged,
    is_tagged,
    memory_tokens,
    open_tagged,
    validate_tags,
    wrap,
)
from cache_service._ops.write import kept
from cache_service.codec import HEADER_SIZE, MAGIC, STAMPER, lacks, pack
from cache_service.config import ttl_seconds

__all__ = ["add", "alive", "exists", "foreign_codec", "held", "memory_lock", "touch", "ttl"]

# Per process, fallback read-modify-writes (add, touch, incr) run one at a time. Across the
# host's processes the host transaction that ``Outages.offline`` runs them in (flock, BEGIN
# IMMEDIATE) makes them atomic on the shared store (tests/test_outage_atomic.py).
memory_lock = threading.Lock()

# Replace KEYS[1] with ARGV[2] (PX ARGV[3]) only if it still holds the dead value ARGV[1].
REPLACE_IF_SAME = """
local v = redis.pcall('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# Returns 0 if KEYS[1] holds no payload of ours (a string of at least the 11-byte header);
# 1 after giving an untagged one PX ARGV[1]; a tagged payload itself (the caller checks its
# tags first).
TOUCH = """
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' or #v < 11 or string.sub(v, 1, 2) ~= ARGV[2] then
  return 0
end
if string.byte(v, 3) < 128 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return 1
end
return v
"""

# {PTTL, payload} of KEYS[1], or {-2} if it holds no string.
TTL_OF = """
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' then
  return {-2}
end
return {redis.call('PTTL', KEYS[1]), v}
"""


def foreign_codec(ctx: OpContext, raw: bytes) -> bool:
    """Whether ``raw`` is not ours to replace though ``get`` does not serve it: a string
    without our header (another program's), or a sound payload in a codec this service lacks
    (signed pickle read by a JSON service: another service's live value)."""
    if raw[:2] != MAGIC or len(raw) < HEADER_SIZE:
        return True
    return lacks(ctx.codec, raw[2])


def held(ctx: OpContext, k: str) -> bool:
    """Whether the memory store holds a live value at ``k`` (as ``alive`` decides on Redis)."""
    if read.from_memory(ctx, k, MISSING, False, UNCOUNTED) is not MISSING:
        return True
    found = ctx.target.fallback.lookup(k)
    return found is not None and foreign_codec(ctx, found[0])


def alive(ctx: OpContext, k: str, raw: bytes) -> Op[bool]:
    """Whether the payload ``raw`` read at ``k`` is one ``get`` would serve (a sound payload
    in a codec this service lacks counts as alive: it is another service's value)."""
    result = read.from_redis(ctx, k, raw, MISSING, False, UNCOUNTED)
    if result is MISSING:  # expired stale-while-revalidate value, or another codec's payload
        return foreign_codec(ctx, raw)
    if type(result) is Tagged:
        stored = yield MGet(tuple(ctx.tag_keys(result.tags)))
        if not result.current(stored):
            return False
        result = read.from_redis(ctx, k, result.plain, MISSING, False, UNCOUNTED)
    return result is not MISSING and type(result) is not Discard


def _seconds(ctx: OpContext, ttl: TTL) -> tuple[float, int]:
    seconds = ctx.default_ttl if ttl is None else ttl_seconds(ttl)
    return seconds, max(1, math.ceil(seconds * 1000))


def add(ctx: OpContext, key: str, value: Any, ttl: TTL = None,
        tags: object = ()) -> Op[bool]:
    """Store ``value`` only if ``key`` holds no live value; True if stored."""
    k = ctx.keys.full(key)
    tag_names = validate_tags(tags) if tags else ()
    seconds, px = _seconds(ctx, ttl)
    payload = pack(ctx.codec, value, k, ctx.max_value_bytes, STAMPER.next())
    tag_keys = ctx.tag_keys(tag_names)
    t = ctx.target

    def remote() -> Op[bool]:
        stored = payload
        if tag_keys:
            stored = wrap(payload, tag_names, (yield from write.tag_tokens(ctx, tag_keys, px)))
        try:
            old = yield Set(k, stored, px, nx=True, get=True)
        except WrongType:  # a foreign value of another type: not ours to replace
            return False
        if old is None:
            return True
        if (yield from alive(ctx, k, old)):
            return False
        return bool((yield Script(REPLACE_IF_SAME, (k,), (old, stored, px))))

    def local() -> bool:
        memory = t.fallback
        with memory_lock:
            if held(ctx, k):
                return False
            next(t.counters.memory_writes)
            if tag_keys:
                memory.set(k, wrap(payload, tag_names,
                                   memory_tokens(memory, tag_keys, seconds)), seconds)
            else:
                memory.set(k, payload, seconds, kept(ctx.codec, value, payload, k))
            return True

    next(ctx.counters.sets)
    added: bool = yield from write.write_or_journal(ctx, remote, local, keys=[k], refused=False)
    return added


def touch(ctx: OpContext, key: str, ttl: TTL = None) -> Op[bool]:
    """Give ``key``'s live value a new TTL (the default if ``None``); False if absent."""
    k = ctx.keys.full(key)
    seconds, px = _seconds(ctx, ttl)
    t = ctx.target

    def remote() -> Op[bool]:
        reply = yield Script(TOUCH, (k,), (px, MAGIC))
        if not isinstance(reply, bytes):
            return bool(reply)
        tagged = open_tagged(k, reply)
        if tagged is None:
            return False
        # re-reading the tokens also keeps the tag keys alive as long as the value
        if not tagged.current((yield from write.tag_tokens(ctx, ctx.tag_keys(tagged.tags), px))):
            return False
        return bool((yield PExpire(k, px)))

    def local() -> bool:
        memory = t.fallback
        with memory_lock:
            found = memory.lookup(k)
            if found is None or not held(ctx, k):
                return False
            raw, kept = found
            tagged = open_tagged(k, raw) if is_tagged(raw) else None
            if tagged is not None:
                memory_tokens(memory, ctx.tag_keys(tagged.tags), seconds)
            next(t.counters.memory_writes)
            memory.set(k, raw, seconds, kept)
            return True

    touched: bool = yield from write.write_or_journal(ctx, remote, local, keys=[k], refused=False)
    return touched


def ttl(ctx: OpContext, key: str) -> Op[float | None]:
    """Seconds ``key``'s live value has left; ``None`` if there is none."""
    k = ctx.keys.full(key)
    t = ctx.target
    if t.gate() is Gate.REDIS:
        try:
            reply = yield Script(TTL_OF, (k,), ())
            if reply[0] == -2 or reply[1][:2] != MAGIC or len(reply[1]) < HEADER_SIZE \
                    or not (yield from alive(ctx, k, reply[1])):  # absent, foreign or dead
                return None
        except Unavailable:
            pass
        else:
            return math.inf if reply[0] == -1 else reply[0] / 1000
    if not held(ctx, k):
        return None
    return t.fallback.remaining(k) or None


def exists(ctx: OpContext, key: str) -> Op[bool]:
    """Whether ``key`` holds a live value of ours."""
    found = yield from read.get(ctx, key, MISSING, UNCOUNTED)
    return found is not MISSING
