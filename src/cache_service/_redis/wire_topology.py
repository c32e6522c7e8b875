"""The slot map of a cluster reached over our connection layer, shared by a target's clients.

One ``Topology`` per cluster location and settings (``topology_for``): the sync client and
every asyncio client (one per event loop) route with the same map, so when it is re-read every
client sees the result at once. Callers never re-read it on their path: a client loads the map
only when it has none yet (its first command), a MOVED patches one slot
(``slots.SlotMap.moved``), and the map is re-read by the prober (``refresh``, while the breaker
is open) or, when a client saw signs of a stale map (``noticed``: MOVED replies, a MOVED to a
node the map does not know, READONLY), by one background thread at a time (``refresh_soon``).
A re-read asks every candidate node at once and waits at most one connect and one request
deadline (``_Answers`` picks the map to adopt), so a hung node costs no more than that.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from dataclasses import replace

from redis.exceptions import ConnectionError as RedisConnectionError

from cache_service._redis.slots import Node, Redirect, SlotMap, TopologyError, read_topology
from cache_service._wire import ReplyError, SyncConnection, WireError, WireSettings, connect

__all__ = ["MOVED_BEFORE_REFRESH", "REFRESH_EVERY", "Topology", "topology_for"]

log = logging.getLogger("cache_service")

MOVED_BEFORE_REFRESH = 3  # MOVED replies naming known nodes that a re-read of the map follows
REFRESH_EVERY = 1.0  # seconds at least between two background re-reads

Answer = tuple[Node, SlotMap | None, str | None]  # who, the map it gave, or why not


class _Answers:
    """The answers of the nodes asked at once, and the best map among them: a map given by a
    node that is a primary in it, complete, first; else a complete one; else any. Settled
    once every node answered or a primary gave a complete map."""

    def __init__(self, asked: int) -> None:
        self.asked = asked
        self.count = 0
        self.best: SlotMap | None = None
        self._rank = (False, False)
        self.errors: list[str] = []

    def add(self, answer: Answer) -> None:
        node, found, error = answer
        self.count += 1
        if found is None:
            self.errors.append(f"{node.name}: {error}")
            return
        rank = (node in found.primaries, found.complete)
        if self.best is None or rank > self._rank:
            self.best, self._rank = found, rank

    @property
    def settled(self) -> bool:
        return self.count >= self.asked or self._rank == (True, True)


class Topology:
    """The seeds (the location's nodes), the connection settings every node shares, and the
    slot map once read (None before)."""

    def __init__(self, seeds: tuple[Node, ...], settings: WireSettings) -> None:
        self.seeds = seeds
        self.settings = settings
        self.map: SlotMap | None = None
        self.refreshes = 0  # maps adopted (tests, stats)
        self._lock = threading.Lock()
        self._soon_lock = threading.Lock()
        self._refreshing = False  # a background re-read runs or waits for its turn
        self._wanted = False  # a sign of a stale map came since the last read started
        self._next_soon = 0.0
        self._moved = 0

    def reset_lock(self) -> None:
        """Fresh locks (in a forked child: the parent's may have been held), no re-read in
        flight (the parent's thread is not in the child)."""
        self._lock = threading.Lock()
        self._soon_lock = threading.Lock()
        self._refreshing = False

    def settings_for(self, node: Node) -> WireSettings:
        """The connection settings of ``node`` (TLS checks the name connected to)."""
        return replace(self.settings, host=node.host, port=node.port, db=0)

    def candidates(self) -> list[Node]:
        """Whom to ask for the map: the primaries known, then the seeds."""
        known = self.map.primaries if self.map is not None else ()
        return list(dict.fromkeys((*known, *self.seeds)))

    @property
    def bound(self) -> float:
        """How long a re-read may take: one connect and one request deadline."""
        return self.settings.connect_timeout + self.settings.request_timeout

    def load(self) -> SlotMap:
        """The map, read now if there is none yet (threads wait for one reader)."""
        found = self.map
        if found is not None:
            return found
        with self._lock:
            return self.map or self.refresh()

    # -- signs of a stale map
    def noticed(self, redirect: Redirect | None) -> None:
        """A client saw a MOVED (``redirect``) or a READONLY reply (None): re-read the map in
        the background after a few MOVEDs to known nodes, at once for anything else."""
        if redirect is not None:
            if redirect.ask:
                return
            known = self.map
            if known is not None and known.knows(redirect.node):
                self._moved += 1
                if self._moved <= MOVED_BEFORE_REFRESH:
                    return
        self.refresh_soon()

    def refresh_soon(self) -> None:
        """Re-read the map in a background thread, one at a time and at most once every
        ``REFRESH_EVERY`` seconds; a sign noticed while one runs or waits its turn gets one
        more read after it (the map it adopts may be older than the sign). Never blocks."""
        with self._soon_lock:
            self._wanted = True
            if self._refreshing:
                return
            self._refreshing = True
        try:
            threading.Thread(target=self._refresh_in_background, daemon=True,
                             name="cache_service-cluster-map").start()
        except RuntimeError:  # interpreter shutting down: no new threads
            self._refreshing = False

    def _refresh_in_background(self) -> None:
        try:
            while True:
                time.sleep(max(self._next_soon - time.monotonic(), 0.0))
                with self._soon_lock:
                    self._wanted = False
                    self._next_soon = time.monotonic() + REFRESH_EVERY
                try:
                    self.refresh()
                except RedisConnectionError as exc:
                    log.info("re-reading the cluster's slot map failed: %s", exc)
                except Exception:
                    log.exception("re-reading the cluster's slot map failed")
                with self._soon_lock:
                    if not self._wanted:
                        self._refreshing = False
                        return
        except BaseException:  # the thread is going (interpreter exit): the next sign starts one
            self._refreshing = False
            raise

    # -- reading the map
    def _adopt(self, answers: _Answers) -> SlotMap:
        found = answers.best
        if found is None:
            missing = answers.asked - answers.count
            late = [f"{missing} gave none within {self.bound:g}s"] if missing else []
            raise RedisConnectionError("no cluster node gave the slot map ("
                                       + "; ".join(answers.errors + late) + ")")
        self.map = found
        self._moved = 0
        self.refreshes += 1
        return found

    def refresh(self) -> SlotMap:
        """Ask every candidate at once, adopt the best map given within one connect and one
        request deadline (blocking; a thread per node); raises a ConnectionError if none."""
        nodes = self.candidates()
        answers = _Answers(len(nodes))
        arrived = threading.Condition()

        def ask(node: Node) -> None:
            try:
                answer = self._ask(node)
            except Exception as exc:  # not the node's answer: a fault here, logged
                log.exception("reading the cluster's slot map from %s failed", node.name)
                answer = (node, None, f"{type(exc).__name__}: {exc}")
            with arrived:
                answers.add(answer)
                arrived.notify_all()

        for node in nodes:
            threading.Thread(target=ask, args=(node,), daemon=True,
                             name="cache_service-cluster-shards").start()
        with arrived:
            arrived.wait_for(lambda: answers.settled, timeout=self.bound)
            return self._adopt(answers)

    def _ask(self, node: Node) -> Answer:
        connection = None
        try:
            connection = SyncConnection(self.settings_for(node))
            flow = read_topology(node.host, self.settings.tls is not None)
            command = next(flow)
            while True:
                try:
                    reply: object = connection.execute(*command)
                except ReplyError as exc:
                    reply = exc
                command = flow.send(reply)
        except StopIteration as done:
            return node, done.value, None
        except (WireError, TopologyError) as exc:
            return node, None, str(exc)
        finally:
            if connection is not None:
                connection.close()

    async def arefresh(self) -> SlotMap:
        """``refresh`` over asyncio connections (a client's first load on its loop)."""
        nodes = self.candidates()
        answers = _Answers(len(nodes))
        pending = {asyncio.ensure_future(self._aask(node)) for node in nodes}
        deadline = asyncio.get_running_loop().time() + self.bound
        try:
            while pending and not answers.settled:
                left = deadline - asyncio.get_running_loop().time()
                done, pending = await asyncio.wait(pending, timeout=max(left, 0.0),
                                                   return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break
                for task in done:
                    answers.add(task.result())
        finally:
            for task in pending:
                task.cancel()
        return self._adopt(answers)

    async def _aask(self, node: Node) -> Answer:
        try:
            connection = await connect(self.settings_for(node))
        except WireError as exc:
            return node, None, str(exc)
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
            return node, done.value, None
        except (WireError, TopologyError) as exc:
            return node, None, str(exc)
        finally:
            connection.close()


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
