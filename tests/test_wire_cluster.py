"""Our own cluster client (``connection="wire"``) on a healthy session cluster: a role swap
without an outage (``CLUSTER FAILOVER`` on a replica) is followed by a background re-read of
the slot map, not by the prober (the breaker never opens); ``read_from_replicas`` sends GET
and MGET to replicas (counted by the servers' own INFO commandstats) and writes to primaries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cache_service import CacheService
from cache_service._redis.slots import Node
from cache_service._redis.wire_cluster import WireClusterClient
from cache_service._redis.wire_cluster_async import AsyncWireClusterClient
from cache_service._redis.wire_topology import topology_for
from cache_service._wire import WireSettings

from .helpers import on_each, unique
from .servers import ClusterDeployment, RedisServer

FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.3}


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterDeployment]:
    """The session cluster of the flavour given as indirect parameter, made whole again
    after the test."""
    deployment: ClusterDeployment = request.getfixturevalue(
        f"{getattr(request, 'param', 'redis')}_cluster")
    yield deployment
    deployment.ensure_healthy()


def wire_url(cluster: ClusterDeployment) -> str:
    """The cluster's nodes in an order no other module uses (a location of its own)."""
    hosts = cluster.startup_nodes[3:] + cluster.startup_nodes[:3]
    return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in hosts) + "/0"


def swap_roles(cluster: ClusterDeployment, replica: RedisServer) -> None:
    """``CLUSTER FAILOVER`` on ``replica``: it and its primary swap roles, nothing is down."""
    with replica.client() as raw:
        raw.execute_command("CLUSTER", "FAILOVER")
    deadline = time.monotonic() + 15
    while replica not in cluster.primaries():
        assert time.monotonic() < deadline, "the replica was not promoted"
        time.sleep(0.05)


def ports(nodes: Any) -> set[int]:
    return {int(node.port) for node in nodes}


@on_each("cluster")
def test_a_role_swap_is_followed_without_the_breaker_opening(
        cluster: ClusterDeployment) -> None:
    svc = CacheService(unique("swap"), url=wire_url(cluster), connection="wire", **FAST)
    keys = [f"k{i}" for i in range(60)]  # over every primary's slots
    for key in keys:
        svc.set(key, key)
    client = svc._target.sync_client()
    before = svc.stats()["target"]["breaker_opened"]
    refreshes = client.topology.refreshes
    swap_roles(cluster, cluster.replicas()[0])
    expected = ports(cluster.primaries())
    started = time.monotonic()
    while ports(client.get_primaries()) != expected:  # MOVED replies start a re-read
        assert time.monotonic() - started < 5.0, (ports(client.get_primaries()), expected)
        for key in keys:
            assert svc.get(key) == key
        time.sleep(0.02)
    assert client.topology.refreshes > refreshes
    assert ports(client.get_primaries()) == expected
    assert sorted(svc.keys()) == sorted(keys)  # each once, from the new primaries
    target = svc.stats()["target"]
    assert target["breaker_opened"] == before
    assert target["breaker_state"] == "closed"
    svc.close()


def no_side() -> Any:
    raise AssertionError("no side client in these tests")


def replica_reader(cluster: ClusterDeployment, kind: type[Any]) -> Any:
    """A cluster client of ``kind`` reading from replicas."""
    seeds = tuple(Node(host, port) for host, port in cluster.startup_nodes)
    settings = WireSettings(connect_timeout=0.5, request_timeout=0.5)
    return kind(topology_for(seeds, settings), no_side, read_from_replicas=True)


def calls(servers: list[RedisServer], command: str) -> dict[int, int]:
    """How often each server ran ``command`` (its INFO commandstats)."""
    found = {}
    for server in servers:
        with server.client() as raw:
            stats = raw.info("commandstats")
        found[server.port] = int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    return found


def grown(before: dict[int, int], after: dict[int, int]) -> int:
    return sum(after[port] - before[port] for port in before)


@on_each("cluster")
def test_reads_from_replicas(cluster: ClusterDeployment) -> None:
    """GET and MGET land on replicas, round-robin; SET on primaries; with a replica down its
    reads fall back to its primary and never fail."""
    client = replica_reader(cluster, WireClusterClient)
    keys = [f"{unique('replica')}:{i}" for i in range(30)]
    for key in keys:
        assert client.set(key, b"v")
    cluster.wait_for_replication()
    deadline = time.monotonic() + 20
    while True:  # a replica is "online" once the gossip tells its offset (else "loading")
        slot_map = client.topology.refresh()
        if all(slot_map.replicas[primary] for primary in slot_map.primaries):
            break
        assert time.monotonic() < deadline, slot_map.replicas
        time.sleep(0.2)
    primaries, replicas = cluster.primaries(), cluster.replicas()
    gets = [calls(primaries, "get"), calls(replicas, "get")]
    mgets = [calls(primaries, "mget"), calls(replicas, "mget")]
    for _ in range(3):
        assert [client.get(key) for key in keys] == [b"v"] * len(keys)
        assert client.mget(keys) == [b"v"] * len(keys)
    assert grown(gets[0], calls(primaries, "get")) == 0
    assert grown(gets[1], calls(replicas, "get")) == 3 * len(keys)
    assert grown(mgets[0], calls(primaries, "mget")) == 0
    assert grown(mgets[1], calls(replicas, "mget")) >= 3

    async def main() -> None:
        aclient = replica_reader(cluster, AsyncWireClusterClient)
        try:
            assert await asyncio.gather(*(aclient.get(key) for key in keys)) == [b"v"] * len(keys)
            assert await aclient.mget(keys) == [b"v"] * len(keys)
        finally:
            await aclient.aclose()

    gets = [calls(primaries, "get"), calls(replicas, "get")]
    asyncio.run(main())
    assert grown(gets[0], calls(primaries, "get")) == 0
    assert grown(gets[1], calls(replicas, "get")) == len(keys)

    down = replicas[0]
    down.kill()
    gets = calls(primaries, "get")
    started = time.monotonic()
    assert [client.get(key) for key in keys] == [b"v"] * len(keys)  # its share: the primary
    assert client.mget(keys) == [b"v"] * len(keys)
    assert time.monotonic() - started < 1.0
    assert grown(gets, calls(primaries, "get")) > 0
    assert client.set(keys[0], b"w")  # writes: primaries
    client.close()
