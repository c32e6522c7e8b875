"""The asyncio Redis Cluster client over our own connection layer (see ``wire_cluster.py``):
per node one auto-pipelined connection of the loop; a batch goes to every node at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache_service._redis.slots import (
    Batch,
    Node,
    Send,
    SlotMap,
    Unserved,
    key_slot,
    redirect_in,
    slot_of_command,
    split_keys,
)
from cache_service._redis.wire_client import (
    AsyncWireClient,
    _scan_args,
    _set_all,
    _set_all_replies,
    _set_args,
    _set_reply,
    redis_error,
)
from cache_service._redis.wire_cluster import (
    _SUMMED,
    PRIMARIES,
    _first,
    _keys,
    _merge,
    _node_of,
    _Routing,
    _scan_reply,
    _unserved,
)
from cache_service._redis.wire_topology import Topology
from cache_service._wire import AsyncConnection, ReplyError, WireError

__all__ = ["AsyncWireClusterClient"]


def _no_side() -> Any:
    raise AttributeError("a cluster node's connection has no side client")


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class AsyncWireClusterClient(_Routing):
    """The asyncio cluster client of one event loop: per node, one auto-pipelined
    connection; a batch goes to every node at once."""

    def __init__(self, topology: Topology, side: Callable[[], Any], *,
                 read_from_replicas: bool = False) -> None:
        super().__init__(topology, side, read_from_replicas=read_from_replicas)
        self._nodes: dict[Node, AsyncWireClient] = {}
        self.loading: asyncio.Future[SlotMap] | None = None

    async def _conn(self, node: Node) -> AsyncConnection:
        """The loop's connection to ``node`` (told READONLY first when reading from
        replicas)."""
        connection = await self._node(node).connection()
        if self.read_from_replicas and connection not in self._readonly:
            await connection.execute("READONLY")
            self._readonly.add(connection)
        return connection

    def _node(self, node: Node) -> AsyncWireClient:
        found = self._nodes.get(node)
        if found is None:
            found = self._nodes[node] = AsyncWireClient(self.topology.settings_for(node),
                                                        _no_side)
        return found

    async def _map(self) -> SlotMap:
        """The slot map; read first if there is none, by one task for every waiting one,
        waited for at most a connect and a request deadline (it goes on for the next)."""
        found = self.topology.map
        if found is not None:
            return found
        task = self.loading
        if task is None or task.done():
            task = self.loading = asyncio.ensure_future(self.topology.arefresh())
            task.add_done_callback(_consume)
        settings = self.topology.settings
        bound = settings.connect_timeout + settings.request_timeout
        done, _ = await asyncio.wait({task}, timeout=bound)  # never cancels the load
        if not done:
            raise RedisTimeoutError(f"reading the cluster's slot map took over {bound:g}s")
        if task.cancelled():
            raise RedisConnectionError("reading the slot map was cancelled: the client closed")
        return task.result()

    async def _one(self, slot: int | None, args: Sequence[Any]) -> Any:
        slot_map = self.topology.map
        if slot_map is None:
            slot_map = await self._map()
        node = _node_of(slot_map, slot)
        started = time.monotonic()
        try:
            try:
                return await (await self._conn(node)).execute(*args)
            except ReplyError as exc:
                if slot is None or redirect_in(exc, node.host) is None:
                    self._stale_if_readonly(exc)
                    raise redis_error(exc) from exc
                batch = self._batch(slot_map, [(slot, args)])
                reply = await self._rounds(
                    batch, batch.retry(batch.settle(Send(node, [args], [0]), [exc])), started)
        except WireError as exc:
            raise redis_error(exc) from exc
        if isinstance(reply[0], ReplyError):
            raise redis_error(reply[0]) from reply[0]
        return reply[0]

    async def _send(self, send: Send, started: float) -> list[object]:
        connection = await self._conn(send.node)
        return await connection.pipeline(send.wire_commands(), timeout=self._left(started))

    async def _rounds(self, batch: Batch, sends: list[Send], started: float) -> list[object]:
        """Run ``sends`` (every node at once) and the redirects they get, all within one
        request deadline from ``started``."""
        while sends:
            replies = await asyncio.gather(*(self._send(send, started) for send in sends))
            redirects = []
            for send, found in zip(sends, replies, strict=True):
                redirects += batch.settle(send, found)
            sends = batch.retry(redirects)
        return batch.replies

    async def _many(self, requests: list[tuple[int, list[Any]]]) -> list[object]:
        try:
            batch = self._batch(await self._map(), requests)
            return await self._rounds(batch, batch.first(), time.monotonic())
        except WireError as exc:
            raise redis_error(exc) from exc
        except Unserved as exc:
            raise _unserved(exc) from exc

    async def _read(self, requests: list[tuple[int, list[Any]]]) -> list[object]:
        """Reads from replicas (``read_from_replicas``); from the primaries when that fails."""
        try:
            batch = self._reads(await self._map(), requests)
            sends = batch.first()
        except Unserved as exc:
            raise _unserved(exc) from exc
        try:
            replies = await self._rounds(batch, sends, time.monotonic())
            if self._read_ok(replies):
                return replies
        except WireError:
            pass
        self._read_failed(batch, sends)
        return await self._many(requests)

    async def _split(self, name: str, keys: Sequence[Any]) -> Any:
        requests = split_keys(name, keys)
        if name == "MGET" and self.read_from_replicas:
            return _merge(name, requests, await self._read(requests), keys)
        if len(requests) == 1:
            return await self._one(requests[0][0], requests[0][1])
        return _merge(name, requests, await self._many(requests), keys)

    async def execute_command(self, *args: Any) -> Any:
        name = str(args[0]).upper() if args else ""
        if name == "MGET" or name in _SUMMED:
            return await self._split(name, args[1:])
        return await self._one(slot_of_command(args), args)

    async def get(self, name: Any) -> Any:
        if self.read_from_replicas:
            return _first(await self._read([(key_slot(name), ["GET", name])]))
        return await self._one(key_slot(name), ("GET", name))

    async def set(self, name: Any, value: Any, *, ex: int | None = None,
                  px: int | None = None, nx: bool = False, get: bool = False) -> Any:
        reply = await self._one(key_slot(name), _set_args(name, value, px, nx, get, ex=ex))
        return _set_reply(reply, get)

    async def mget(self, *keys: Any) -> Any:
        return await self._split("MGET", _keys(keys))

    async def pexpire(self, name: Any, px: int) -> bool:
        return bool(await self._one(key_slot(name), ("PEXPIRE", name, px)))

    async def exists(self, *names: Any) -> Any:
        return await self._split("EXISTS", names)

    async def unlink(self, *names: Any) -> Any:
        return await self._split("UNLINK", names)

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        return await self.execute_command("EVALSHA", sha, numkeys, *args)

    async def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        return await self.execute_command("EVAL", script, numkeys, *args)

    async def set_all(self, items: tuple[tuple[str, bytes], ...], px: int) -> list[Any]:
        """``SET k v PX px`` for every item: one pipeline per node, all nodes at once."""
        commands = _set_all(items, px)
        return _set_all_replies(await self._many([(key_slot(k), c) for (k, _), c in
                                                  zip(items, commands, strict=True)]))

    async def _on(self, node: Node, *args: Any) -> Any:
        try:
            return await (await self._conn(node)).execute(*args)
        except WireError as exc:
            raise redis_error(exc) from exc

    async def ping(self, target_nodes: Any = None) -> bool:
        """PING a primary, or every node of ``target_nodes`` at once."""
        if target_nodes is None:
            return await self._one(None, ("PING",)) in (b"PONG", "PONG")
        nodes = self._targets(target_nodes, await self._map())
        replies = await asyncio.gather(*(self._on(node, "PING") for node in nodes))
        return all(reply in (b"PONG", "PONG") for reply in replies)

    async def scan(self, cursor: int = 0, match: Any = None, count: Any = None,
                   target_nodes: Any = PRIMARIES) -> tuple[dict[str, int], list[Any]]:
        """One SCAN page of every node of ``target_nodes``: ``({node name: cursor}, keys)``."""
        nodes = self._targets(target_nodes, await self._map())
        replies = await asyncio.gather(
            *(self._on(node, *_scan_args(cursor, match, count)) for node in nodes))
        cursors: dict[str, int] = {}
        keys: list[Any] = []
        for node, reply in zip(nodes, replies, strict=True):
            found, page = _scan_reply(node, reply)
            cursors.update(found)
            keys += page
        return cursors, keys

    async def drop_idle(self) -> None:
        """Forget the connections that failed (healthy ones are shared by every task)."""
        for node in list(self._nodes.values()):
            await node.drop_idle()

    async def aclose(self) -> None:
        """Stop a pending map read, close every connection and the side client."""
        task = self.loading
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        nodes, self._nodes = self._nodes, {}
        for node in nodes.values():
            await node.aclose()
        side, self._side.client = self._side.client, None
        if side is not None:
            await side.aclose()
