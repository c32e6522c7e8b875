"""Cluster clients fail fast when nodes hang, and still follow MOVED/ASK.

redis-py's RedisCluster refreshes the slot table in the thread (or at the next command of
the task) whose command just failed: CLUSTER SLOTS to node after node, one socket timeout per
hung node, under a lock every other caller queues on. Our own cluster client (the clients
``build_sync_client`` and ``build_async_client`` make) never refreshes on a caller's path at
all: a MOVED patches one slot, the prober re-reads the map (``refresh_topology``); only a
client without a map yet reads one (bounded, shared). So with every primary SIGSTOPped each
call costs about one socket timeout.

These tests use a private cluster with a long node timeout, so freezing every primary for a
second or two starts no failover and leaves nothing to repair for other modules.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from cache_service._redis.backend import (
    CONNECTIVITY_ERRORS,
    build_async_client,
    build_sync_client,
    refresh_topology,
    slot_of,
)
from cache_service._redis.wire_cluster import WireClusterClient
from cache_service._redis.wire_cluster_async import AsyncWireClusterClient
from cache_service.config import TargetOptions, parse_url

from .helpers import hammer, unique
from .servers import ClusterDeployment, ClusterNodeInfo, RedisServer

pytestmark = pytest.mark.slow

FAIL_FAST = TargetOptions(socket_timeout=0.25, connect_timeout=0.25)
BOUND = 0.9  # generous: about one 0.25 s timeout per call, on a loaded 2-core machine


@pytest.fixture
def options() -> TargetOptions:
    """Fail-fast options (our own connection layer: the only one for a cluster)."""
    return FAIL_FAST


def slot_owner_port(client: Any, slot: int) -> int:
    """The port of the node ``client`` sends ``slot`` to."""
    assert isinstance(client, (WireClusterClient, AsyncWireClusterClient))
    return int(client.topology.map.node_for(slot).port)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterDeployment]:
    """A private 6-node cluster whose nodes tolerate a few seconds of SIGSTOP."""
    with ClusterDeployment(node_timeout_ms=8000) as deployment:
        yield deployment


def spread_keys(count: int = 24) -> list[str]:
    """Keys whose slots cover every primary (one prefix, no hash tags)."""
    prefix = unique("hang")
    return [f"{prefix}:{i}" for i in range(count)]


class Frozen:
    """Every primary SIGSTOPped inside the ``with``; SIGCONT on the way out."""

    def __init__(self, cluster: ClusterDeployment) -> None:
        self.nodes = cluster.primaries()

    def __enter__(self) -> Frozen:
        for node in self.nodes:
            node.freeze()
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.thaw()


def test_sync_calls_fail_fast_with_every_primary_hung(cluster: ClusterDeployment,
                                                      options: TargetOptions) -> None:
    client = build_sync_client(parse_url(cluster.cluster_url), options)
    keys = spread_keys()
    for key in keys:
        client.set(key, b"v")
    durations: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(3):
            started = time.perf_counter()
            try:
                client.get(keys[(n * 3 + i) % len(keys)])
            except CONNECTIVITY_ERRORS as exc:
                with lock:
                    failures.append(exc)
            with lock:
                durations.append(time.perf_counter() - started)

    with Frozen(cluster):
        assert hammer(worker, threads=4) == []
    assert len(failures) == 12, failures
    assert max(durations) < BOUND, sorted(durations)
    started = time.perf_counter()
    refresh_topology(client)
    assert_back(lambda: [client.get(k) for k in keys] == [b"v"] * len(keys), started)
    client.close()


def assert_back(check: Any, started: float) -> None:
    """``check()`` becomes true within 2 s of ``started`` (errors count as not yet)."""
    while True:
        try:
            if check():
                return
        except CONNECTIVITY_ERRORS:
            pass
        assert time.perf_counter() - started < 2.0, "commands did not work again within 2 s"
        time.sleep(0.02)


def test_async_calls_fail_fast_with_every_primary_hung(cluster: ClusterDeployment,
                                                       options: TargetOptions) -> None:
    keys = spread_keys()

    async def main() -> tuple[list[float], int, float]:
        client = build_async_client(parse_url(cluster.cluster_url), options)
        try:
            for key in keys:
                await client.set(key, b"v")
            durations: list[float] = []
            failures = 0

            async def worker(n: int) -> None:
                nonlocal failures
                for i in range(3):
                    started = time.perf_counter()
                    try:
                        await client.get(keys[(n * 3 + i) % len(keys)])
                    except CONNECTIVITY_ERRORS:
                        failures += 1
                    durations.append(time.perf_counter() - started)

            with Frozen(cluster):
                await asyncio.gather(*(worker(n) for n in range(4)))
            started = time.perf_counter()
            while True:  # the client refreshes by itself (bounded) before its next command
                try:
                    if [await client.get(k) for k in keys] == [b"v"] * len(keys):
                        break
                except CONNECTIVITY_ERRORS:
                    pass
                assert time.perf_counter() - started < 2.0
                await asyncio.sleep(0.02)
            return durations, failures, time.perf_counter() - started
        finally:
            await client.aclose()

    durations, failures, back_after = asyncio.run(main())
    assert failures == 12
    assert max(durations) < BOUND, sorted(durations)
    assert back_after < 2.0


def test_async_refresh_waits_are_bounded_and_shared(cluster: ClusterDeployment,
                                                    options: TargetOptions) -> None:
    """A refresh stuck on a hung node holds each command up for at most one socket
    timeout, and one refresh serves every waiting task (the first read of the slot map, the
    one refresh a client ever makes itself)."""
    keys = spread_keys(6)

    async def main() -> list[float]:
        client = build_async_client(parse_url(cluster.cluster_url), options)
        try:
            for key in keys:
                await client.set(key, b"v")
            owe_refresh(client)
            with Frozen(cluster):
                durations = []
                for _ in range(3):
                    started = time.perf_counter()
                    results = await asyncio.gather(*(client.get(k) for k in keys),
                                                   return_exceptions=True)
                    durations.append(time.perf_counter() - started)
                    assert all(isinstance(r, CONNECTIVITY_ERRORS) for r in results), results
            return durations
        finally:
            await client.aclose()

    durations = asyncio.run(main())
    assert max(durations) < BOUND, durations


def owe_refresh(client: Any) -> None:
    """Put ``client`` in the state where it reads the slot map itself: it has none yet."""
    assert isinstance(client, AsyncWireClusterClient)
    client.topology.map = None


def pending_refresh(client: Any) -> Any:
    """The slot-map read ``client`` runs (or ran)."""
    assert isinstance(client, AsyncWireClusterClient)
    return client.loading


def test_async_close_stops_a_pending_refresh(cluster: ClusterDeployment,
                                             options: TargetOptions) -> None:
    """Closing while a refresh hangs cancels it, so it cannot reopen connections after
    the close (they would leak)."""

    async def main() -> Any:
        client = build_async_client(parse_url(cluster.cluster_url), options)
        await client.ping()
        owe_refresh(client)
        for node in cluster.nodes:
            node.freeze()
        try:
            # the read and the caller's wait share one bound: close inside it
            ping = asyncio.ensure_future(client.ping())
            await asyncio.sleep(0.1)
            assert not pending_refresh(client).done()
            await client.aclose()
            with pytest.raises(CONNECTIVITY_ERRORS):
                await ping
        finally:
            for node in cluster.nodes:
                node.thaw()
        await asyncio.sleep(0.3)  # long enough for a surviving refresh to finish
        return client

    client = asyncio.run(main())
    assert pending_refresh(client).cancelled()
    assert client.topology.map is None  # closed, nothing read
    del client
    gc.collect()  # an unclosed client or connection would raise a ResourceWarning here


def node_ids(cluster: ClusterDeployment) -> dict[tuple[str, int], ClusterNodeInfo]:
    return {(i.host, i.port): i for i in cluster.cluster_nodes()}


def setslot(node: RedisServer, *args: Any) -> None:
    with node.client() as raw:
        raw.execute_command("CLUSTER", "SETSLOT", *args)


class SlotMove:
    """Migrate one slot from ``src`` to ``dst`` by hand, step by step, as a resharding does."""

    def __init__(self, cluster: ClusterDeployment, slot: int, src: RedisServer,
                 dst: RedisServer) -> None:
        self.cluster, self.slot, self.src, self.dst = cluster, slot, src, dst
        infos = node_ids(cluster)
        self.src_id, self.dst_id = infos[src.address].node_id, infos[dst.address].node_id

    def begin(self) -> None:
        """IMPORTING on ``dst``, MIGRATING on ``src``: ``src`` answers ASK for missing keys."""
        setslot(self.dst, self.slot, "IMPORTING", self.src_id)
        setslot(self.src, self.slot, "MIGRATING", self.dst_id)

    def migrate(self, *keys: str) -> None:
        """MIGRATE ``keys`` from ``src`` to ``dst``."""
        with self.src.client() as raw:
            raw.execute_command("MIGRATE", self.dst.host, self.dst.port, "", 0, 5000,
                                "KEYS", *keys)

    def finish(self) -> None:
        """Hand the slot to ``dst`` on every primary: ``src`` now answers MOVED."""
        for node in self.cluster.primaries():
            setslot(node, self.slot, "NODE", self.dst_id)


def test_moved_and_ask_are_followed_while_resharding(cluster: ClusterDeployment,
                                                     options: TargetOptions) -> None:
    prefix = unique("move")
    keys = [f"{{{prefix}}}:{i}" for i in range(3)]
    new_key = f"{{{prefix}}}:new"
    expected = [b"v0", b"v1", b"v2"]
    slot = slot_of(keys[0])
    src = cluster.primary_for_key(keys[0])
    dst = next(n for n in cluster.primaries() if n is not src)
    move = SlotMove(cluster, slot, src, dst)

    async def main() -> None:
        sync = build_sync_client(parse_url(cluster.cluster_url), options)
        # the wire clients of one location share a slot map: the asyncio one gets its own
        hosts = cluster.startup_nodes[1:] + cluster.startup_nodes[:1]
        other = "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in hosts)
        aio = build_async_client(parse_url(other), options)
        try:
            for i, key in enumerate(keys):
                sync.set(key, f"v{i}".encode())
            assert [await aio.get(k) for k in keys] == expected  # both tables now known
            move.begin()
            move.migrate(keys[0])  # src answers ASK for keys[0], still serves the others
            assert [sync.get(k) for k in keys] == expected
            assert [await aio.get(k) for k in keys] == expected
            sync.set(new_key, b"during")  # missing on src: ASK, written on dst
            move.migrate(*keys[1:])
            move.finish()  # src answers MOVED: both clients patch their tables
            assert [sync.get(k) for k in keys] == expected
            assert [await aio.get(k) for k in keys] == expected
            assert slot_owner_port(sync, slot) == dst.port
            assert slot_owner_port(aio, slot) == dst.port
            assert sync.get(new_key) == await aio.get(new_key) == b"during"
        finally:
            sync.close()
            await aio.aclose()

    try:
        asyncio.run(main())
    finally:  # give the slot back, whatever it holds
        back = SlotMove(cluster, slot, dst, src)
        back.begin()
        with dst.client() as raw:
            present = [k for k in [*keys, new_key] if raw.exists(k)]
        if present:
            back.migrate(*present)
        back.finish()


# -- our own cluster client only: one deadline per map read and per redirected request ----------

WIRE = replace(FAIL_FAST, connection="wire")


def server_of(cluster: ClusterDeployment, node: Any) -> RedisServer:
    return cluster.node_at((node.host, node.port))


def timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    found = call()
    return found, time.perf_counter() - started


def test_reading_the_map_asks_every_node_at_once(cluster: ClusterDeployment) -> None:
    """Two hung primaries asked first cost nothing (the third primary's map is adopted at
    once; one after the other they cost a 0.25 s request deadline each); with every primary
    hung a replica's map is adopted within one connect and one request deadline."""
    client = build_sync_client(parse_url(cluster.cluster_url), WIRE)
    topology = client.topology
    topology.load()
    hung = [server_of(cluster, node) for node in topology.candidates()[:2]]
    for node in hung:
        node.freeze()
    try:
        found, took = timed(topology.refresh)
        afound, atook = timed(lambda: asyncio.run(topology.arefresh()))
    finally:
        for node in hung:
            node.thaw()
    assert found.complete
    assert afound.complete
    assert max(took, atook) < 0.4, (took, atook)  # one after the other: 0.5 s at least
    with Frozen(cluster):
        found, took = timed(topology.refresh)
        afound, atook = timed(lambda: asyncio.run(topology.arefresh()))
    assert found.complete  # from replicas: nobody failed over
    assert afound.complete
    assert max(took, atook) < topology.bound + 0.25, (took, atook)
    client.close()


def test_a_redirect_stays_within_the_request_deadline(cluster: ClusterDeployment) -> None:
    """A node answering late with a MOVED to a hung node: the request fails within one
    request deadline in all (0.5 s here), not one for the first node plus one for the
    redirect."""
    options = replace(WIRE, socket_timeout=0.5)
    key = unique("redirect")

    def stale(client: Any) -> tuple[RedisServer, RedisServer]:
        """Send ``key``'s slot to a node that does not serve it (it answers MOVED)."""
        slot_map = client.topology.map
        owner = slot_map.node_for(slot_of(key))
        other = next(node for node in slot_map.primaries if node != owner)
        slot_map.moved(slot_of(key), other)
        return server_of(cluster, owner), server_of(cluster, other)

    def late_moved_to_a_hung_node(owner: RedisServer, other: RedisServer) -> None:
        owner.freeze()
        other.freeze()
        threading.Timer(0.3, other.thaw).start()

    client = build_sync_client(parse_url(cluster.cluster_url), options)
    client.set(key, b"v")
    owner, other = stale(client)
    late_moved_to_a_hung_node(owner, other)
    try:
        started = time.perf_counter()
        with pytest.raises(CONNECTIVITY_ERRORS):
            client.get(key)
        took = time.perf_counter() - started
    finally:
        time.sleep(0.35)
        owner.thaw()
    assert 0.3 < took < 0.68, took  # one deadline; a fresh one for the redirect: 0.8 s
    assert client.get(key) == b"v"
    client.close()

    async def main() -> float:
        aclient = build_async_client(parse_url(cluster.cluster_url), options)
        await aclient.get(key)
        owner, other = stale(aclient)
        late_moved_to_a_hung_node(owner, other)
        try:
            started = time.perf_counter()
            with pytest.raises(CONNECTIVITY_ERRORS):
                await aclient.get(key)
            return time.perf_counter() - started
        finally:
            await asyncio.sleep(0.35)
            owner.thaw()
            await aclient.aclose()

    took = asyncio.run(main())
    assert 0.3 < took < 0.68, took
