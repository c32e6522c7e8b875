"""Redis Cluster clients over our own connection layer (``connection="wire"``), shaped like the
standalone ones of ``wire_client.py`` and like what ``cluster_requests.py``'s requests call.

A command goes to the primary serving its key's slot (``slots.key_slot`` on the shared map of
``wire_topology``), on that node's connection: one per thread (sync) or one auto-pipelined
connection per event loop (asyncio). A batch (MGET or UNLINK of keys of several slots, SETs in
one write) is split by slot and sent as one pipeline per node (``slots.Batch``; the asyncio
client sends to every node at once). A MOVED patches that slot and the request is sent once more
to the node named, an ASK once more after ``ASKING``; no caller re-reads the topology: the
prober does (``refresh``), or one background thread after signs of a stale map (MOVED replies,
READONLY: ``Topology.noticed``). What is not on the data path (the CLI's admin commands) goes to
redis-py's public cluster client, made on first use (``side``).
The asyncio client is in ``wire_cluster_async.py``; what both share is here (``_Routing``).
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from cache_service._redis.slots import (
    Batch,
    Node,
    Send,
    SlotMap,
    Unserved,
    is_readonly,
    join_replies,
    key_slot,
    redirect_in,
    slot_of_command,
    split_keys,
)
from cache_service._redis.wire_client import (
    _scan_args,
    _set_all,
    _set_all_replies,
    _set_args,
    _set_reply,
    _Side,
    redis_error,
)
from cache_service._redis.wire_topology import Topology
from cache_service._wire import (
    ReplyError,
    SyncConnection,
    ThreadConnections,
    WireError,
    WireTimeout,
)

__all__ = ["PRIMARIES", "WireClusterClient"]

PRIMARIES = "primaries"  # as ``cluster_requests.PRIMARIES``: every primary of the cluster
_SUMMED = frozenset(("UNLINK", "DEL", "EXISTS", "TOUCH"))


def _keys(args: Sequence[Any]) -> tuple[Any, ...]:
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return tuple(args[0])
    return tuple(args)


def _merge(name: str, requests: list[tuple[int, list[Any]]], replies: list[object],
           keys: Sequence[Any]) -> Any:
    """``slots.join_replies``, an error reply among them raised as redis-py's exception."""
    for reply in replies:
        if isinstance(reply, ReplyError):
            raise redis_error(reply) from reply
    return join_replies(name, requests, replies, keys)


def _first(replies: Sequence[object]) -> Any:
    """The reply of a one-request batch, an error reply raised as redis-py's exception."""
    if isinstance(replies[0], ReplyError):
        raise redis_error(replies[0]) from replies[0]
    return replies[0]


def _unserved(exc: Unserved) -> RedisConnectionError:
    return RedisConnectionError(str(exc))


def _node_of(slot_map: SlotMap, slot: int | None) -> Node:
    """The primary serving ``slot`` (None: the first primary); a connectivity error when
    none does (the map is incomplete during a failover: the prober re-reads it)."""
    node = slot_map.node_for(slot) if slot is not None else next(iter(slot_map.primaries), None)
    if node is None:
        raise RedisConnectionError(f"no cluster node serves slot {slot}")
    return node


def _scan_reply(node: Node, reply: Any) -> tuple[dict[str, int], list[Any]]:
    cursor, keys = reply
    return {node.name: int(cursor)}, list(keys)


SHUN_FOR = 1.0  # seconds a replica that failed a read is left out of reads


class _Routing:
    """What both clients share: the topology, the side client, routing a raw command, and
    the choice of a replica to read from (``read_from_replicas``: GET and MGET go round-robin
    to the slot's replicas, READONLY sent once per connection, the primary when a replica
    fails or there is none; writes always go to primaries)."""

    def __init__(self, topology: Topology, side: Callable[[], Any], *,
                 read_from_replicas: bool = False) -> None:
        self.topology = topology
        self._side = _Side(side)
        self.read_from_replicas = read_from_replicas
        self._turn = itertools.count()
        self._shunned: dict[Node, float] = {}
        self._readonly: weakref.WeakSet[Any] = weakref.WeakSet()  # connections told READONLY

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

    def _batch(self, slot_map: SlotMap, requests: Sequence[tuple[int, Sequence[Any]]],
               route: Callable[[int], Node | None] | None = None) -> Batch:
        return Batch(slot_map, requests, self.topology.noticed, route)

    def _reads(self, slot_map: SlotMap, requests: Sequence[tuple[int, Sequence[Any]]]) -> Batch:
        """A batch of reads routed to replicas: for each slot the next of its primary's
        replicas not shunned, else the primary."""
        now = time.monotonic()
        shunned = self._shunned

        def route(slot: int) -> Node | None:
            primary = slot_map.node_for(slot)
            copies = [n for n in slot_map.replicas.get(primary, ()) if shunned.get(n, 0.0) <= now] \
                if primary is not None else []
            return copies[next(self._turn) % len(copies)] if copies else primary

        return self._batch(slot_map, requests, route)

    def _read_failed(self, batch: Batch, sends: Sequence[Send]) -> None:
        """A read from replicas failed: leave the replicas it used out for ``SHUN_FOR``."""
        primaries = set(batch.map.primaries)
        until = time.monotonic() + SHUN_FOR
        for send in sends:
            if send.node not in primaries:
                self._shunned[send.node] = until

    @staticmethod
    def _read_ok(replies: Sequence[object]) -> bool:
        return not any(isinstance(reply, ReplyError) for reply in replies)

    def _left(self, started: float) -> float:
        """What is left of the deadline of a request that started at ``started``
        (``time.monotonic``); a ``WireTimeout`` when nothing is."""
        limit = self.topology.settings.request_timeout
        left = started + limit - time.monotonic()
        if left <= 0:
            raise WireTimeout(f"a cluster request passed its deadline ({limit:g}s) before "
                              "its redirect was followed")
        return left

    def _stale_if_readonly(self, reply: ReplyError) -> None:
        """A READONLY reply: the node written to is a replica now; re-read the map soon."""
        if is_readonly(reply):
            self.topology.noticed(None)


class WireClusterClient(_Routing):
    """The blocking cluster client: per node, one connection per thread."""

    def __init__(self, topology: Topology, side: Callable[[], Any], *,
                 read_from_replicas: bool = False) -> None:
        super().__init__(topology, side, read_from_replicas=read_from_replicas)
        self._nodes: dict[Node, ThreadConnections] = {}
        self._lock = threading.Lock()

    def _conn(self, node: Node) -> SyncConnection:
        """This thread's connection to ``node`` (told READONLY first when reading from
        replicas)."""
        connection = self._connections(node).get()
        if self.read_from_replicas and connection not in self._readonly:
            connection.execute("READONLY")
            self._readonly.add(connection)
        return connection

    def _connections(self, node: Node) -> ThreadConnections:
        found = self._nodes.get(node)
        if found is None:
            with self._lock:
                found = self._nodes.get(node)
                if found is None:
                    found = self._nodes[node] = ThreadConnections(self.topology.settings_for(node))
        return found

    def _map(self) -> SlotMap:
        found = self.topology.map
        return found if found is not None else self.topology.load()

    def _one(self, slot: int | None, args: Sequence[Any]) -> Any:
        """One command on the primary of ``slot`` (None: any primary), following a redirect
        within the same deadline."""
        slot_map = self._map()
        node = _node_of(slot_map, slot)
        started = time.monotonic()
        try:
            try:
                return self._conn(node).execute(*args)
            except ReplyError as exc:
                if slot is None or redirect_in(exc, node.host) is None:
                    self._stale_if_readonly(exc)
                    raise redis_error(exc) from exc
                batch = self._batch(slot_map, [(slot, args)])
                reply = self._rounds(batch, batch.retry(batch.settle(Send(node, [args], [0]),
                                                                     [exc])), started)
        except WireError as exc:
            raise redis_error(exc) from exc
        if isinstance(reply[0], ReplyError):
            raise redis_error(reply[0]) from reply[0]
        return reply[0]

    def _rounds(self, batch: Batch, sends: list[Send], started: float) -> list[object]:
        """Run ``sends`` and the redirects they get, all within one request deadline from
        ``started``."""
        while sends:
            redirects = []
            for send in sends:
                replies = self._conn(send.node).pipeline(send.wire_commands(),
                                                         timeout=self._left(started))
                redirects += batch.settle(send, replies)
            sends = batch.retry(redirects)
        return batch.replies

    def _many(self, requests: list[tuple[int, list[Any]]]) -> list[object]:
        """Commands of several slots: a pipeline per node, then one round of redirects."""
        try:
            batch = self._batch(self._map(), requests)
            return self._rounds(batch, batch.first(), time.monotonic())
        except WireError as exc:
            raise redis_error(exc) from exc
        except Unserved as exc:
            raise _unserved(exc) from exc

    def _read(self, requests: list[tuple[int, list[Any]]]) -> list[object]:
        """Reads from replicas (``read_from_replicas``); from the primaries when that fails."""
        try:
            batch = self._reads(self._map(), requests)
            sends = batch.first()
        except Unserved as exc:
            raise _unserved(exc) from exc
        try:
            replies = self._rounds(batch, sends, time.monotonic())
            if self._read_ok(replies):
                return replies
        except WireError:
            pass
        self._read_failed(batch, sends)
        return self._many(requests)

    def _split(self, name: str, keys: Sequence[Any]) -> Any:
        requests = split_keys(name, keys)
        if name == "MGET" and self.read_from_replicas:
            return _merge(name, requests, self._read(requests), keys)
        if len(requests) == 1:
            return self._one(requests[0][0], requests[0][1])
        return _merge(name, requests, self._many(requests), keys)

    def execute_command(self, *args: Any) -> Any:
        name = str(args[0]).upper() if args else ""
        if name == "MGET" or name in _SUMMED:
            return self._split(name, args[1:])
        return self._one(slot_of_command(args), args)

    def get(self, name: Any) -> Any:
        if self.read_from_replicas:
            return _first(self._read([(key_slot(name), ["GET", name])]))
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
            return self._conn(node).execute(*args)
        except WireError as exc:
            raise redis_error(exc) from exc

    def ping(self, target_nodes: Any = None) -> bool:
        """PING a primary, or every node of ``target_nodes`` (``"primaries"``, a node)."""
        if target_nodes is None:
            return self._one(None, ("PING",)) in (b"PONG", "PONG")
        nodes = self._targets(target_nodes, self._map())
        return all(self._on(node, "PING") in (b"PONG", "PONG") for node in nodes)

    def scan(self, cursor: int = 0, match: Any = None, count: Any = None,
             target_nodes: Any = PRIMARIES) -> tuple[dict[str, int], list[Any]]:
        """One SCAN page of every node of ``target_nodes``: ``({node name: cursor}, keys)``."""
        cursors: dict[str, int] = {}
        keys: list[Any] = []
        for node in self._targets(target_nodes, self._map()):
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
