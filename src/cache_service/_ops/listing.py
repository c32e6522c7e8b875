"""Listing a service's keys (generator operation): SCAN a glob on Redis (every primary on a
cluster) keeping the keys that hold our payloads, or match the fallback store's live keys.

Only keys under the service's own prefix are ever scanned, so another program's keys (or
another service's) are never listed, and the glob is Redis' own (``redis_glob`` on the
fallback). A value invalidated by tag is listed until it expires (checking each one would
cost a read per key).
"""

from __future__ import annotations

from cache_service._host.breaker import Gate
from cache_service._ops.context import OpContext
from cache_service._ops.keyops import held
from cache_service._ops.protocol import Op, Unavailable
from cache_service._ops.remove import SCAN_COUNT
from cache_service._ops.requests import Call, Scan, Script
from cache_service._redis.cluster_requests import by_slot, scan_node, scan_primaries
from cache_service.codec import MAGIC
from cache_service.redis_glob import compile_glob

__all__ = ["OWNED", "keys"]

# Those of KEYS that hold a string starting with our header.
OWNED = """
local found = {}
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k)['ok'] == 'string' and redis.call('GETRANGE', k, 0, 1) == ARGV[1] then
    found[#found + 1] = k
  end
end
return found
"""


def keys(ctx: OpContext, glob: str, limit: int) -> Op[list[str]]:
    """Up to ``limit`` of this service's keys (as the caller names them) matching the Redis
    glob ``glob``, from Redis or, while it is out, from the fallback store."""
    pattern = ctx.keys.pattern(glob)
    head = len(ctx.keys.head)
    t = ctx.target
    if t.gate() is Gate.REDIS:
        try:
            found = yield from _scan(t.location.kind == "cluster", pattern, limit)
        except Unavailable:
            pass
        else:
            return [k.decode("utf-8", "replace")[head:] for k in found]
    matched = t.fallback.matching(compile_glob(pattern), limit)
    return [k[head:] for k in matched if held(ctx, k)]


def _scan(cluster: bool, pattern: str, limit: int) -> Op[list[bytes]]:
    # SCAN may return a key more than once (a rehash; on a cluster, a node that was just
    # demoted and is still listed): a dict keeps each key once, in the order first seen
    found: dict[bytes, None] = {}
    if cluster:
        cursors, page = yield Call(scan_primaries, (pattern, SCAN_COUNT))
        found.update(dict.fromkeys((yield from _owned(cluster, page))))
        for node, first in cursors.items():
            cursor = first
            while cursor and len(found) < limit:
                more, page = yield Call(scan_node, (node, cursor, pattern, SCAN_COUNT))
                cursor = more[node]
                found.update(dict.fromkeys((yield from _owned(cluster, page))))
        return list(found)[:limit]
    cursor = 0
    while True:
        cursor, page = yield Scan(cursor, pattern, SCAN_COUNT)
        found.update(dict.fromkeys((yield from _owned(cluster, page))))
        if not cursor or len(found) >= limit:
            return list(found)[:limit]


def _owned(cluster: bool, page: list[bytes]) -> Op[list[bytes]]:
    """Those of ``page`` that hold our payloads (one script; per hash slot on a cluster)."""
    owned: list[bytes] = []
    for group in by_slot(page) if cluster else [page] if page else []:
        owned += yield Script(OWNED, tuple(group), (MAGIC,))
    return owned
