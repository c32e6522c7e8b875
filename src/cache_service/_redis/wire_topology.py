"""The slot map of a cluster reached over our connection layer, shared by a target's clients.

One ``Topology`` per cluster location and settings (``topology_for``): the sync client and
every asyncio client (one per event loop) route with the same map, so when the prober
refreshes it (``refresh``, blocking, from its own thread) every client sees the result at
once. Callers never refresh it: a client loads the map only when it has none yet (its first
command), and a MOVED patches one slot (``slots.SlotMap.moved``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Generator
from dataclasses import replace

from redis.exceptions import ConnectionError as RedisConnectionError

from cache_service._redis.slots import Node, SlotMap, TopologyError, read_topology
from cache_service._wire import ReplyError, SyncConnection, WireError, WireSettings, connect

__all__ = ["Topology", "topology_for"]

Flow = Generator[tuple[str, ...], object, SlotMap]


class Topology:
    """The seeds (the location's nodes), the connection settings every node shares, and the
    slot map once read (None before)."""

    def __init__(self, seeds: tuple[Node, ...], settings: WireSettings) -> None:
        self.seeds = seeds
        self.settings = settings
        self.map: SlotMap | None = None
        self._lock = threading.Lock()

    def reset_lock(self) -> None:
        """A fresh lock (in a forked child: the parent's may have been held)."""
        self._lock = threading.Lock()

    def settings_for(self, node: Node) -> WireSettings:
        """The connection settings of ``node`` (TLS checks the name connected to)."""
        return replace(self.settings, host=node.host, port=node.port, db=0)

    def candidates(self) -> list[Node]:
        """Whom to ask for the map: the primaries known, then the seeds."""
        known = self.map.primaries if self.map is not None else ()
        return list(dict.fromkeys((*known, *self.seeds)))

    def load(self) -> SlotMap:
        """The map, read now if there is none yet (threads wait for one reader)."""
        found = self.map
        if found is not None:
            return found
        with self._lock:
            return self.map or self.refresh()

    def refresh(self) -> SlotMap:
        """Ask the nodes one after the other until one gives the map (blocking: each costs
        at most a connect and a request deadline); raises a ConnectionError if none does."""
        errors = []
        for node in self.candidates():
            connection = None
            try:
                connection = SyncConnection(self.settings_for(node))
                found = _drive(connection, read_topology(node.host, self.settings.tls is not None))
            except (WireError, TopologyError) as exc:
                errors.append(f"{node.name}: {exc}")
                continue
            finally:
                if connection is not None:
                    connection.close()
            self.map = found
            return found
        raise RedisConnectionError("no cluster node gave the slot map (" + "; ".join(errors) + ")")

    async def arefresh(self) -> SlotMap:
        """``refresh`` over asyncio connections (a client's first load on its loop)."""
        errors = []
        for node in self.candidates():
            try:
                connection = await connect(self.settings_for(node))
            except WireError as exc:
                errors.append(f"{node.name}: {exc}")
                continue
            try:
                flow = read_topology(node.host, self.settings.tls is not None)
                command = next(flow)
                while True:
                    try:
                        reply = await connection.execute(*command)
                    except ReplyError as exc:
                        reply = exc
                    command = flow.send(reply)
            except StopIteration as done:
                self.map = done.value
                return self.map
            except (WireError, TopologyError) as exc:
                errors.append(f"{node.name}: {exc}")
            finally:
                connection.close()
        raise RedisConnectionError("no cluster node gave the slot map (" + "; ".join(errors) + ")")


def _drive(connection: SyncConnection, flow: Flow) -> SlotMap:
    try:
        command = next(flow)
        while True:
            try:
                reply: object = connection.execute(*command)
            except ReplyError as exc:
                reply = exc
            command = flow.send(reply)
    except StopIteration as done:
        found: SlotMap = done.value
        return found


_topologies: weakref.WeakValueDictionary[tuple[object, ...], Topology] = (
    weakref.WeakValueDictionary())
_topologies_lock = threading.Lock()


def _after_fork() -> None:
    """A child forked while a thread held a lock here would wait for it forever."""
    global _topologies_lock
    _topologies_lock = threading.Lock()
    for topology in list(_topologies.values()):
        topology.reset_lock()


os.register_at_fork(after_in_child=_after_fork)


def topology_for(seeds: tuple[Node, ...], settings: WireSettings) -> Topology:
    """The one topology of these seeds and settings in this process (kept while a client
    holds it)."""
    key = (seeds, settings)
    with _topologies_lock:
        found = _topologies.get(key)
        if found is None:
            found = _topologies[key] = Topology(seeds, settings)
        return found
