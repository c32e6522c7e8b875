"""The requests the drivers send with a cluster client (``ping_primaries``, ``scan_primaries``,
``scan_node``) and the slot grouping of keys (``by_slot``, ``slot_of``): scripts and
multi-key commands must stay within one hash slot.

Each request function takes the sync or the asyncio cluster client (``WireClusterClient``,
``AsyncWireClusterClient``) and returns what the client method returns (a value, or an
awaitable), so one function serves both drivers.
"""

from __future__ import annotations

from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError

from cache_service._redis.slots import key_slot

__all__ = ["PRIMARIES", "by_slot", "ping_primaries", "scan_node", "scan_primaries", "slot_of"]

K = TypeVar("K", str, bytes)

PRIMARIES = "primaries"  # ``target_nodes`` for "every primary of the cluster"


def slot_of(key: bytes | str) -> int:
    """The cluster hash slot of ``key`` (scripts may only touch keys of one slot)."""
    return key_slot(key)


def by_slot(keys: list[K]) -> list[list[K]]:
    """``keys`` grouped by cluster hash slot (scripts and commands must stay in one slot)."""
    groups: dict[int, list[K]] = {}
    for key in keys:
        groups.setdefault(slot_of(key), []).append(key)
    return list(groups.values())


def ping_primaries(client: Any) -> Any:
    """PING every cluster primary: Redis is back only when every slot is served again."""
    return client.ping(target_nodes=PRIMARIES)


def scan_primaries(client: Any, match: str, count: int) -> Any:
    """The first SCAN page of every cluster primary: ``({node_name: cursor}, keys)``."""
    return client.scan(0, match, count, target_nodes=PRIMARIES)


def scan_node(client: Any, node_name: str, cursor: int, match: str, count: int) -> Any:
    """The next SCAN page of one cluster node: ``({node_name: cursor}, keys)``."""
    node = client.get_node(node_name=node_name)
    if node is None:  # the topology changed under the scan: a failover is under way
        raise RedisConnectionError(f"cluster node {node_name} left during a SCAN")
    return client.scan(cursor, match, count, target_nodes=node)
