"""Lua scripts of the operations, sent as ``Script(TEXT, keys, args)`` requests.

A script runs by its SHA (``EVALSHA``, falling back to ``EVAL`` on ``NOSCRIPT``, which also
loads it; see ``_ops.requests.run_script``), on standalone, Sentinel and Cluster (where a
script's keys must share one slot).

An error reply of a script fails that request only (see ``_redis.errors``); scripts use
``redis.pcall`` where a key may hold a foreign value and report such cases in their result.
"""

from __future__ import annotations

__all__ = ["DROP_IF_SAME", "GET_WITH_PTTL", "SET_UNLESS_FOREIGN"]

# Unlink KEYS[1] only if it still holds ARGV[1] (a dead value we read; not a newer one).
DROP_IF_SAME = """
local v = redis.pcall('GET', KEYS[1])
if v == ARGV[1] then
  return redis.call('UNLINK', KEYS[1])
end
return 0
"""

# A near-cache fill: the value and how long it lives, in one read (a non-string value
# raises WRONGTYPE, as GET does).
GET_WITH_PTTL = """
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""

# SET KEYS[1] to ARGV[1] with PX ARGV[2] unless a foreign key is there (another Redis type, or
# a string not starting with our header ARGV[3]): get_or_set fills a miss, never over a key
# that is not ours. 1 if set.
SET_UNLESS_FOREIGN = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and (kind ~= 'string' or redis.call('STRLEN', KEYS[1]) < 11
    or redis.call('GETRANGE', KEYS[1], 0, 1) ~= ARGV[3]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
