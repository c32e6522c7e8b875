"""Our own cluster client (``connection="wire"``) on a healthy session cluster: a role swap
without an outage (``CLUSTER FAILOVER`` on a replica) is followed by a background re-read of
the slot map, not by the prober (the breaker never opens)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from cache_service import CacheService

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
