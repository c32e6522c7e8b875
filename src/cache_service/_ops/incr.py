"""``incr`` / ``decr``: atomic counters stored as ordinary values (a generator operation).

A counter is a plain-JSON int payload like any value ``set`` writes, so ``get`` returns it as
an ``int``. On Redis one script reads, checks and rewrites it atomically (``INCRBY`` cannot
work on a payload with our header); an absent key starts at 0 and gets the TTL, an existing
one keeps its TTL; a dead value (corrupt, or invalidated by tag) counts as absent. Counters
carry no tags: ``incr`` on a live value written with tags raises ``NotAnIntegerError`` like
any other non-counter. Redis scripts compute in doubles, so counters stay exact within
``±(2**53 - 1)``; a result outside raises ``ValueTooLargeError`` and changes nothing.

During an outage a counter lives in the fallback store (the host's, or this process' with
``fallback="process"``) and starts at 0 there, since the store's copies of an earlier period
are never served; the read-check-write runs in the outage write's host transaction, so it is
atomic across the host's processes too. Like every write it is journaled, so on recovery the
key is invalidated on Redis. The key does not keep its pre-outage count, which would silently miss
every increment made during the outage.
"""

from __future__ import annotations

import math

from cache_service._ops import read, write
from cache_service._ops.context import MISSING, TTL, UNCOUNTED, OpContext
from cache_service._ops.keyops import REPLACE_IF_SAME, alive, held, memory_lock
from cache_service._ops.protocol import Op
from cache_service._ops.requests import Script
from cache_service._ops.tags import is_tagged
from cache_service.codec import MAGIC, PLAIN_JSON, STAMPER, pack
from cache_service.config import ttl_seconds
from cache_service.errors import ConfigurationError, NotAnIntegerError, ValueTooLargeError

__all__ = ["MAX_COUNTER", "decr", "incr"]

MAX_COUNTER = 2**53 - 1

# KEYS[1]: the counter; ARGV: delta, PX for a new key, the 11-byte header to write, bound.
# Returns the new value as text; 2 if the key holds a non-string (another error of GET, such
# as an ACL denial, is the script's error reply); {payload} if it holds a
# string that is not a plain int payload (the caller decides: a dead value counts as absent);
# 3 if the result would leave ±bound.
COUNTER = """
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' and cur['err'] and string.sub(cur['err'], 1, 9) ~= 'WRONGTYPE' then
  return cur
end
local n = 0
if cur then
  if type(cur) ~= 'string' then
    return 2
  end
  local body = string.sub(cur, 12)
  if string.sub(cur, 1, 3) ~= string.sub(ARGV[3], 1, 3) or not string.match(body, '^%-?%d+$') then
    return {cur}
  end
  if #body > 16 then
    return 3
  end
  n = tonumber(body)
end
n = n + tonumber(ARGV[1])
if math.abs(n) > tonumber(ARGV[4]) then
  return 3
end
local text = string.format('%.0f', n)
if cur then
  redis.call('SET', KEYS[1], ARGV[3] .. text, 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[3] .. text, 'PX', ARGV[2])
end
return text
"""
_ATTEMPTS = 5
_HEAD = MAGIC + bytes([PLAIN_JSON])


def _not_int(k: str) -> NotAnIntegerError:
    return NotAnIntegerError(f"{k!r} holds a value that is not an int counter; "
                             "incr/decr left it unchanged")


def _too_large(k: str) -> ValueTooLargeError:
    return ValueTooLargeError(f"counter {k!r} would leave ±(2**53 - 1); left unchanged")


def _checked(delta: object) -> int:
    if type(delta) is not int or not -MAX_COUNTER <= delta <= MAX_COUNTER:
        raise ConfigurationError(f"delta must be an int within ±(2**53 - 1), got {delta!r}")
    return delta


def decr(ctx: OpContext, key: str, delta: int = 1, ttl: TTL = None) -> Op[int]:
    """Subtract ``delta`` from the counter at ``key`` atomically; the new value."""
    return incr(ctx, key, -_checked(delta), ttl)


def incr(ctx: OpContext, key: str, delta: int = 1, ttl: TTL = None) -> Op[int]:
    """Add ``delta`` to the counter at ``key`` atomically; the new value."""
    _checked(delta)
    k = ctx.keys.full(key)
    seconds = ctx.default_ttl if ttl is None else ttl_seconds(ttl)
    px = max(1, math.ceil(seconds * 1000))
    stamp = STAMPER.next()
    t = ctx.target

    head = _HEAD + stamp.to_bytes(8, "big")

    def remote() -> Op[int]:
        for _ in range(_ATTEMPTS):
            reply = yield Script(COUNTER, (k,), (delta, px, head, MAX_COUNTER))
            if type(reply) is bytes:
                return int(reply)
            if type(reply) is not list:
                raise _not_int(k) if reply == 2 else _too_large(k)
            # not a counter: a live value of another kind, or a dead one (absent for us)
            old = reply[0]
            if (yield from alive(ctx, k, old)):
                raise _not_int(k)
            if (yield Script(REPLACE_IF_SAME, (k,), (old, head + str(delta).encode(), px))):
                return delta
        raise _not_int(k)  # rewritten under us again and again: give up, change nothing

    def local() -> int:
        memory = t.fallback
        with memory_lock:
            current = read.from_memory(ctx, k, MISSING, False, UNCOUNTED)
            left = seconds
            if current is MISSING and held(ctx, k):  # another codec's value
                raise _not_int(k)
            if current is MISSING:  # absent, or dead (corrupt, invalidated by tag)
                current = 0
            elif type(current) is not int or is_tagged((memory.lookup(k) or (b"",))[0]):
                raise _not_int(k)  # counters carry no tags, as on Redis
            else:
                left = memory.remaining(k) or seconds
            value = current + delta
            if not -MAX_COUNTER <= value <= MAX_COUNTER:
                raise _too_large(k)
            next(t.counters.memory_writes)
            memory.set(k, pack(ctx.codec, value, k, ctx.max_value_bytes, stamp), left, value)
            return value

    next(ctx.counters.sets)
    # refused by Redis (OOM, NOPERM...): the counter is dropped, as an eviction would, and
    # the call counts from zero
    value: int = yield from write.write_or_journal(ctx, remote, local, keys=[k], refused=delta,
                                                   overwrites=True)
    return value
