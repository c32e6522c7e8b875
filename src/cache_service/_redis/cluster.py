"""Redis Cluster clients that fail fast: no slot-table refresh on a caller's path.

redis-py refreshes the slot table in the thread whose command just failed (one socket
timeout per hung node, under a lock every other caller queues on). These subclasses only mark
it stale there; ``redis_backend.refresh_topology`` (the prober) does the refresh, and the
asyncio client runs one shared, bounded refresh. Also the request functions the drivers call
with a cluster client (``ping_primaries``, ``scan_primaries``, ``scan_node``).
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import NodesManager, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache_service._redis.slots import key_slot

__all__ = ["PRIMARIES", "by_slot", "ping_primaries", "scan_node", "scan_primaries", "slot_of"]

K = TypeVar("K", str, bytes)

PRIMARIES = "primaries"  # redis-py's node flag for "every primary of the cluster"


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


class _DeferringNodesManager(NodesManager):
    """A cluster's slot table whose refreshes requested inside a command are deferred.

    redis-py re-reads the topology (CLUSTER SLOTS to node after node, one socket timeout per
    hung node, under a lock every other caller then queues on) in the thread whose command
    just failed. Here that only marks the table stale; ``refresh_topology`` (the prober)
    does the real refresh.
    """

    stale = False

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        """Mark the topology as needing a refresh (no I/O)."""
        self.stale = True


class _SyncRedisCluster(RedisCluster):
    """redis-py's cluster whose failed commands never refresh the topology themselves."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # the constructor's own refresh is a real one
        self.nodes_manager.__class__ = _DeferringNodesManager



def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a background task's outcome (no "exception was never retrieved")."""
    if not task.cancelled():
        task.exception()


class _AsyncRedisCluster(AsyncRedisCluster):
    """redis-py's asyncio cluster, initialized before its first command is routed, whose
    topology refreshes never hold a command up for long.

    redis-py 8.1 routes a keyed command sent before the lazy first ``initialize()`` to a
    random primary; under concurrency the MOVED replies make it close every connection,
    including those other tasks are reading from ("Connection closed by server").

    After a connection error redis-py refreshes the topology at the start of the next
    command (CLUSTER SLOTS node after node, then COMMAND on a primary: seconds when nodes
    hang, with every task queued on its lock). Here one shared background task refreshes,
    re-reading only the slots once the command table is known, and each command waits for
    it at most ``refresh_bounds`` (first initialization, later refreshes) before it fails
    with a TimeoutError; the refresh goes on for the next command.
    """

    def __init__(self, *args: Any, refresh_bounds: tuple[float, float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refresh_bounds = refresh_bounds
        self._refresh_task: asyncio.Future[None] | None = None
        self._commands_read = False

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Initialize first (bounded, shared), then run the command."""
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)

    async def initialize(self, additional_startup_nodes_info: Any = None,
                         last_failed_node_name: str | None = None) -> _AsyncRedisCluster:
        """Wait (bounded) for the shared refresh, starting it if none is running."""
        if not self._initialize:
            return self
        task = self._refresh_task
        if task is None or task.done():
            task = self._refresh_task = asyncio.ensure_future(
                self._refresh(last_failed_node_name))
            task.add_done_callback(_consume)
        bound = self._refresh_bounds[1 if self._commands_read else 0]
        done, _ = await asyncio.wait({task}, timeout=bound)  # never cancels the refresh
        if not done:
            raise RedisTimeoutError(f"cluster topology refresh still running after {bound:g}s")
        if task.cancelled():
            raise RedisConnectionError("cluster topology refresh cancelled: the client closed")
        error = task.exception()
        if error is not None:
            raise error
        return self

    async def _refresh(self, last_failed_node_name: str | None) -> None:
        if not self._commands_read:  # slots, then the command table (once)
            await super().initialize(last_failed_node_name=last_failed_node_name)
            self._commands_read = True
            return
        await self.nodes_manager.initialize(last_failed_node_name=last_failed_node_name)
        self._initialize = False

    async def aclose(self) -> None:
        """Stop a running refresh, then close every connection (redis-py skips that while
        a refresh is owed)."""
        task = self._refresh_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        if self._initialize and self._commands_read:
            self._initialize = False
        await super().aclose()


