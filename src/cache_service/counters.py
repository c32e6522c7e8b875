"""``incr`` / ``decr``: atomic counters stored as ordinary values (a generator operation).

A counter is a plain-JSON int payload like any value ``set`` writes, so ``get`` returns it as
an ``int``. On Redis one script reads, checks and rewrites it atomically (``INCRBY`` cannot
work on a payload with our header); an absent key starts at 0 and gets the TTL, an existing
one keeps its TTL. Redis scripts compute in doubles, so counters stay exact within
``±(2**53 - 1)``; a result outside raises ``ValueTooLargeError`` and changes nothing.

During an outage a counter lives in this process' memory store only (it starts at 0 there,
since the memory store starts empty); like every write it is journaled, so on recovery the key
is invalidated on Redis. The key does not keep its pre-outage count, which would silently miss
every increment made during the outage.
"""

from __future__ import annotations

import math

from .codec import MAGIC, PLAIN_JSON, STAMPER, CorruptPayload, pack, unpack
from .config import ttl_seconds
from .core import TTL, ServiceCore
from .errors import ConfigurationError, NotAnIntegerError, ValueTooLargeError
from .keyops import memory_lock
from .scripts import run_script
from .target import Op

__all__ = ["MAX_COUNTER", "decr", "incr"]

MAX_COUNTER = 2**53 - 1

# KEYS[1]: the counter; ARGV: delta, PX for a new key, the 11-byte header to write, bound.
# Returns the new value as text, 2 (holds something that is not an int of ours) or 3 (the
# result would leave ±bound).
COUNTER = """
local cur = redis.pcall('GET', KEYS[1])
local n = 0
if cur then
  if type(cur) ~= 'string' or string.sub(cur, 1, 3) ~= string.sub(ARGV[3], 1, 3) then
    return 2
  end
  local body = string.sub(cur, 12)
  if not string.match(body, '^%-?%d+$') then
    return 2
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


def decr(core: ServiceCore, key: str, delta: int = 1, ttl: TTL = None) -> Op[int]:
    """Subtract ``delta`` from the counter at ``key`` atomically; the new value."""
    return incr(core, key, -_checked(delta), ttl)


def incr(core: ServiceCore, key: str, delta: int = 1, ttl: TTL = None) -> Op[int]:
    """Add ``delta`` to the counter at ``key`` atomically; the new value."""
    _checked(delta)
    k = core._keys.full(key)
    seconds = core._default_ttl if ttl is None else ttl_seconds(ttl)
    px = max(1, math.ceil(seconds * 1000))
    stamp = STAMPER.next()
    t = core._target

    def remote() -> Op[int]:
        reply = yield (run_script, COUNTER, [k], [delta, px, _HEAD + stamp.to_bytes(8, "big"),
                                                  MAX_COUNTER])
        if type(reply) is bytes:
            return int(reply)
        raise _not_int(k) if reply == 2 else _too_large(k)

    def local() -> int:
        memory = t.memory
        with memory_lock:
            found = memory.lookup(k)
            left = seconds
            current = 0
            if found is not None:
                try:
                    current = unpack(core._codec, found[0], k)
                except CorruptPayload:
                    raise _not_int(k) from None
                if type(current) is not int:
                    raise _not_int(k)
                left = memory.remaining(k) or seconds
            value = current + delta
            if not -MAX_COUNTER <= value <= MAX_COUNTER:
                raise _too_large(k)
            t.counters.memory_writes += 1
            memory.set(k, pack(core._codec, value, k, core._max_value_bytes, stamp), left, value)
            return value

    core._counters.sets += 1
    value: int = yield from core._write(remote, local, keys=[k])
    return value
