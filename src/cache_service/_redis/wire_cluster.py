"""Redis Cluster clients over our own connection layer (``connection="wire"``), shaped like the
standalone ones of ``wire_client.py`` and like what ``cluster.py``'s requests call.

A command goes to the primary serving its key's slot (``slots.key_slot`` on the shared map of
``wire_topology``), on that node's connection: one per thread (sync) or one auto-pipelined
connection per event loop (asyncio). A batch (MGET or UNLINK of keys of several slots, SETs in
one write) is split by slot and sent as one pipeline per node (``slots.Batch``; the asyncio
client sends to every node at once). A MOVED patches that slot and the request is sent once more
to the node named, an ASK once more after ``ASKING``; nothing else re-reads the topology here:
the prober does (``refresh``). What is not on the data path (the CLI's admin commands, the near
cache's tracking links) goes to a redis-py cluster client made on first use (``side``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache_service._redis.slots import Batch, Node, Send, SlotMap, Unserved, key_slot, redirect_in
from cache_service._redis.wire_client import (
    AsyncWireClient,
    _scan_args,
    _set_all,
    _set_all_replies,
    _set_args,
    _set_reply,
    _Side,
    redis_error,
)
from cache_service._redis.wire_topology import Topology
from cache_service._wire import ReplyError, ThreadConnections, WireError

__all__ = ["AsyncWireClusterClient", "WireClusterClient"]

PRIMARIES = "primaries"  # as ``cluster.PRIMARIES``: every primary of the cluster
_SUMMED = frozenset(("UNLINK", "DEL", "EXISTS", "TOUCH"))


def _keys(args: Sequence[Any]) -> tuple[Any, ...]:
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return tuple(args[0])
    return tuple(args)


def _slot_of(args: Sequence[Any]) -> int | None:
    """The slot a raw command is routed by: its first key (a script's first key; none for
    a script without keys or a command without arguments)."""
    name = str(args[0]).upper() if args else ""
    if name in ("EVAL", "EVALSHA"):
        return key_slot(args[3]) if len(args) > 3 and int(args[2]) > 0 else None
    return key_slot(args[1]) if len(args) > 1 else None


def _per_slot(name: str, keys: Sequence[Any]) -> list[tuple[int, list[Any]]]:
    """``name keys...`` as one command per slot (keys kept in order within each)."""
    groups: dict[int, list[Any]] = {}
    for key in keys:
        groups.setdefault(key_slot(key), []).append(key)
    return [(slot, [name, *group]) for slot, group in groups.items()]


def _merge(name: str, requests: list[tuple[int, list[Any]]], replies: list[object],
           keys: Sequence[Any]) -> Any:
    """One reply from the per-slot replies of ``_per_slot``: a sum, or MGET's values in the
    order of ``keys``."""
    for reply in replies:
        if isinstance(reply, ReplyError):
            raise redis_error(reply) from reply
    if name != "MGET":
        return sum(int(r) for r in replies)  # type: ignore[call-overload]
    found: dict[Any, object] = {}
    for (_, command), values in zip(requests, replies, strict=True):
        found.update(zip(command[1:], values, strict=True))  # type: ignore[call-overload]
    return [found[key] for key in keys]


def _unserved(exc: Unserved) -> RedisConnectionError:
    return RedisConnectionError(str(exc))


def _scan_reply(node: Node, reply: Any) -> tuple[dict[str, int], list[Any]]:
    cursor, keys = reply
    return {node.name: int(cursor)}, list(keys)


class _Routing:
    """What both clients share: the topology, the side client, routing a raw command."""

    def __init__(self, topology: Topology, side: Callable[[], Any]) -> None:
        self.topology = topology
        self._side = _Side(side)

    def __getattr__(self, name: str) -> Any:
        # the CLI's INFO, CLUSTER INFO, TYPE... go to redis-py; a node of ours it names
        # (``target_nodes=client.get_primaries()[0]``) becomes redis-py's node
        if name.startswith("_"):
            raise AttributeError(name)
        side = self._side.get()
        found = getattr(side, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            target = kwargs.get("target_nodes")
            if isinstance(target, Node):
                kwargs["target_nodes"] = side.get_node(host=target.host, port=target.port)
            return found(*args, **kwargs)

        return call

    @property
    def side(self) -> Any:
        """The redis-py cluster client for what is off the data path."""
        return self._side.get()

    @property
    def built_side(self) -> Any:
        """The side client if it was made, else None (no I/O)."""
        return self._side.client

    def get_primaries(self) -> list[Node]:
        """The primaries of the known slot map (none before it is read)."""
        found = self.topology.map
        return list(found.primaries) if found is not None else []

    def get_nodes(self) -> list[Node]:
        """The primaries and their replicas in the known slot map."""
        found = self.topology.map
        if found is None:
            return []
        return list(dict.fromkeys(n for p in found.primaries for n in (p, *found.replicas[p])))

    def get_node(self, node_name: str) -> Node | None:
        """The node named ``host:port`` in the known slot map, or None."""
        return next((n for n in self.get_nodes() if n.name == node_name), None)

    def _targets(self, target_nodes: Any, slot_map: SlotMap) -> list[Node]:
        if target_nodes == PRIMARIES:
            return list(slot_map.primaries)
        if isinstance(target_nodes, Node):
            return [target_nodes]
        raise ValueError(f"target_nodes must be {PRIMARIES!r} or a node, not {target_nodes!r}")

    @staticmethod
    def _batch(slot_map: SlotMap, requests: Sequence[tuple[int, Sequence[Any]]]) -> Batch:
        return Batch(slot_map, requests)


class WireClusterClient(_Routing):
    """The blocking cluster client: per node, one connection per thread."""

    def __init__(self, topology: Topology, side: Callable[[], Any]) -> None:
        super().__init__(topology, side)
        self._nodes: dict[Node, ThreadConnections] = {}
        self._lock = threading.Lock()

    def _connections(self, node: Node) -> ThreadConnections:
        found = self._nodes.get(node)
        if found is None:
            with self._lock:
                found = self._nodes.get(node)
                if found is None:
                    found = self._nodes[node] = ThreadConnections(self.topology.settings_for(node))
        return found

    def _one(self, slot: int | None, args: Sequence[Any]) -> Any:
        """One command on the primary of ``slot`` (None: any primary), following a redirect."""
        slot_map = self.topology.map or self.topology.load()
        node = slot_map.node_for(slot) if slot is not None else slot_map.primaries[0]
        if node is None:
            raise RedisConnectionError(f"no cluster node serves slot {slot}")
        try:
            return self._connections(node).get().execute(*args)
        except ReplyError as exc:
            if slot is None or redirect_in(exc, node.host) is None:
                raise redis_error(exc) from exc
            batch = self._batch(slot_map, [(slot, args)])
            reply = self._rounds(batch, batch.retry(batch.settle(Send(node, [args], [0]), [exc])))
        except WireError as exc:
            raise redis_error(exc) from exc
        if isinstance(reply[0], ReplyError):
            raise redis_error(reply[0]) from reply[0]
        return reply[0]

    def _rounds(self, batch: Batch, sends: list[Send]) -> list[object]:
        while sends:
            redirects = []
            for send in sends:
                replies = self._connections(send.node).get().pipeline(send.wire_commands())
                redirects += batch.settle(send, replies)
            sends = batch.retry(redirects)
        return batch.replies

    def _many(self, requests: list[tuple[int, list[Any]]]) -> list[object]:
        """Commands of several slots: a pipeline per node, then one round of redirects."""
        try:
            batch = self._batch(self.topology.map or self.topology.load(), requests)
            return self._rounds(batch, batch.first())
        except WireError as exc:
            raise redis_error(exc) from exc
        except Unserved as exc:
            raise _unserved(exc) from exc

    def _split(self, name: str, keys: Sequence[Any]) -> Any:
        requests = _per_slot(name, keys)
        if len(requests) == 1:
            return self._one(requests[0][0], requests[0][1])
        return _merge(name, requests, self._many(requests), keys)

    def execute_command(self, *args: Any) -> Any:
        name = str(args[0]).upper() if args else ""
        if name == "MGET" or name in _SUMMED:
            return self._split(name, args[1:])
        return self._one(_slot_of(args), args)

    def get(self, name: Any) -> Any:
        return self._one(key_slot(name), ("GET", name))

    def set(self, name: Any, value: Any, *, ex: int | None = None, px: int | None = None,
            nx: bool = False, get: bool = False) -> Any:
        return _set_reply(self._one(key_slot(name), _set_args(name, value, px, nx, get, ex=ex)),
                          get)

    def mget(self, *keys: Any) -> Any:
        return self._split("MGET", _keys(keys))

    def pexpire(self, name: Any, px: int) -> bool:
        return bool(self._one(key_slot(name), ("PEXPIRE", name, px)))

    def exists(self, *names: Any) -> Any:
        return self._split("EXISTS", names)

    def unlink(self, *names: Any) -> Any:
        return self._split("UNLINK", names)

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        return self.execute_command("EVALSHA", sha, numkeys, *args)

    def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        return self.execute_command("EVAL", script, numkeys, *args)

    def set_all(self, items: tuple[tuple[str, bytes], ...], px: int) -> list[Any]:
        """``SET k v PX px`` for every item: one pipeline per node."""
        commands = _set_all(items, px)
        return _set_all_replies(self._many([(key_slot(k), c) for (k, _), c in
                                            zip(items, commands, strict=True)]))

    def _on(self, node: Node, *args: Any) -> Any:
        try:
            return self._connections(node).get().execute(*args)
        except WireError as exc:
            raise redis_error(exc) from exc

    def ping(self, target_nodes: Any = None) -> bool:
        """PING a primary, or every node of ``target_nodes`` (``"primaries"``, a node)."""
        if target_nodes is None:
            return self._one(None, ("PING",)) in (b"PONG", "PONG")
        nodes = self._targets(target_nodes, self.topology.map or self.topology.load())
        return all(self._on(node, "PING") in (b"PONG", "PONG") for node in nodes)

    def scan(self, cursor: int = 0, match: Any = None, count: Any = None,
             target_nodes: Any = PRIMARIES) -> tuple[dict[str, int], list[Any]]:
        """One SCAN page of every node of ``target_nodes``: ``({node name: cursor}, keys)``."""
        cursors: dict[str, int] = {}
        keys: list[Any] = []
        for node in self._targets(target_nodes, self.topology.map or self.topology.load()):
            found, page = _scan_reply(node, self._on(node, *_scan_args(cursor, match, count)))
            cursors.update(found)
            keys += page
        return cursors, keys

    def refresh(self) -> None:
        """Re-read the slot map (the prober; blocking)."""
        self.topology.refresh()

    def drop_idle(self) -> None:
        """Close this thread's connections (the next call makes fresh ones)."""
        for connections in list(self._nodes.values()):
            connections.close()

    def close(self) -> None:
        """Close every connection and the side client."""
        with self._lock:
            nodes, self._nodes = self._nodes, {}
        for connections in nodes.values():
            connections.close_all()
        side, self._side.client = self._side.client, None
        if side is not None:
            side.close()


def _no_side() -> Any:
    raise AttributeError("a cluster node's connection has no side client")


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class AsyncWireClusterClient(_Routing):
    """The asyncio cluster client of one event loop: per node, one auto-pipelined
    connection; a batch goes to every node at once."""

    def __init__(self, topology: Topology, side: Callable[[], Any]) -> None:
        super().__init__(topology, side)
        self._nodes: dict[Node, AsyncWireClient] = {}
        self.loading: asyncio.Future[SlotMap] | None = None

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
        slot_map = self.topology.map or await self._map()
        node = slot_map.node_for(slot) if slot is not None else slot_map.primaries[0]
        if node is None:
            raise RedisConnectionError(f"no cluster node serves slot {slot}")
        try:
            return await (await self._node(node).connection()).execute(*args)
        except ReplyError as exc:
            if slot is None or redirect_in(exc, node.host) is None:
                raise redis_error(exc) from exc
            batch = self._batch(slot_map, [(slot, args)])
            reply = await self._rounds(batch, batch.retry(batch.settle(Send(node, [args], [0]),
                                                                       [exc])))
        except WireError as exc:
            raise redis_error(exc) from exc
        if isinstance(reply[0], ReplyError):
            raise redis_error(reply[0]) from reply[0]
        return reply[0]

    async def _send(self, send: Send) -> list[object]:
        return await (await self._node(send.node).connection()).pipeline(send.wire_commands())

    async def _rounds(self, batch: Batch, sends: list[Send]) -> list[object]:
        while sends:
            replies = await asyncio.gather(*(self._send(send) for send in sends))
            redirects = []
            for send, found in zip(sends, replies, strict=True):
                redirects += batch.settle(send, found)
            sends = batch.retry(redirects)
        return batch.replies

    async def _many(self, requests: list[tuple[int, list[Any]]]) -> list[object]:
        try:
            batch = self._batch(self.topology.map or await self._map(), requests)
            return await self._rounds(batch, batch.first())
        except WireError as exc:
            raise redis_error(exc) from exc
        except Unserved as exc:
            raise _unserved(exc) from exc

    async def _split(self, name: str, keys: Sequence[Any]) -> Any:
        requests = _per_slot(name, keys)
        if len(requests) == 1:
            return await self._one(requests[0][0], requests[0][1])
        return _merge(name, requests, await self._many(requests), keys)

    async def execute_command(self, *args: Any) -> Any:
        name = str(args[0]).upper() if args else ""
        if name == "MGET" or name in _SUMMED:
            return await self._split(name, args[1:])
        return await self._one(_slot_of(args), args)

    async def get(self, name: Any) -> Any:
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
            return await (await self._node(node).connection()).execute(*args)
        except WireError as exc:
            raise redis_error(exc) from exc

    async def ping(self, target_nodes: Any = None) -> bool:
        """PING a primary, or every node of ``target_nodes`` at once."""
        if target_nodes is None:
            return await self._one(None, ("PING",)) in (b"PONG", "PONG")
        nodes = self._targets(target_nodes, self.topology.map or await self._map())
        replies = await asyncio.gather(*(self._on(node, "PING") for node in nodes))
        return all(reply in (b"PONG", "PONG") for reply in replies)

    async def scan(self, cursor: int = 0, match: Any = None, count: Any = None,
                   target_nodes: Any = PRIMARIES) -> tuple[dict[str, int], list[Any]]:
        """One SCAN page of every node of ``target_nodes``: ``({node name: cursor}, keys)``."""
        nodes = self._targets(target_nodes, self.topology.map or await self._map())
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
