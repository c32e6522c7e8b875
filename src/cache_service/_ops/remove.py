"""Key removal as operations: UNLINK keys, unlink only keys that hold our payloads (one Lua
script), and SCAN a pattern to unlink its matches. ``cluster``: one script per hash slot (a
script may only touch keys of one slot), and SCAN on every primary.
"""

from __future__ import annotations

from cache_service._ops.protocol import Op
from cache_service._ops.requests import Call, Scan, Script, Unlink
from cache_service._redis.cluster_requests import by_slot, scan_node, scan_primaries
from cache_service.codec import MAGIC

__all__ = ["SCAN_COUNT", "UNLINK_OWNED", "scan_unlink", "unlink_keys", "unlink_owned"]

# Unlinks the given keys that hold a string starting with our header: never a foreign key.
UNLINK_OWNED = """
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k)['ok'] == 'string' and redis.call('GETRANGE', k, 0, 1) == ARGV[1] then
    n = n + redis.call('UNLINK', k)
  end
end
return n
"""
SCAN_COUNT = 1000


def scan_unlink(cluster: bool, pattern: str) -> Op[int]:
    """SCAN for ``pattern`` (on a cluster: every primary, one node at a time) and unlink
    the matches that hold our payloads; a count."""
    removed = 0
    if cluster:
        cursors, keys = yield Call(scan_primaries, (pattern, SCAN_COUNT))
        removed += yield from unlink_owned(cluster, keys)
        for node, first in cursors.items():
            cursor = first
            while cursor:
                found, keys = yield Call(scan_node, (node, cursor, pattern, SCAN_COUNT))
                cursor = found[node]
                removed += yield from unlink_owned(cluster, keys)
        return removed
    cursor = 0
    while True:
        cursor, keys = yield Scan(cursor, pattern, SCAN_COUNT)
        removed += yield from unlink_owned(cluster, keys)
        if not cursor:
            return removed


def unlink_owned(cluster: bool, keys: list[bytes]) -> Op[int]:
    """Unlink those of ``keys`` that hold our payloads; a count. On a cluster one script
    per hash slot, since a script may only touch keys of one slot."""
    if not keys:
        return 0
    if not cluster:
        removed: int = yield Script(UNLINK_OWNED, tuple(keys), (MAGIC,))
        return removed
    removed = 0
    for group in by_slot(keys):
        removed += yield Script(UNLINK_OWNED, tuple(group), (MAGIC,))
    return removed


def unlink_keys(keys: list[str]) -> Op[int]:
    """UNLINK ``keys``; a count. On a cluster our client splits it: one pipeline per node
    (at most one timeout when a node hangs)."""
    removed: int = yield Unlink(tuple(keys))
    return removed
