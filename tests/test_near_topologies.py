"""The near cache on Sentinel and Cluster: the tracker follows the primary (one link per
primary on Cluster), and a failover under load serves nothing invalidated meanwhile; on Redis
and on Valkey (the server matrix)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cache_service import CacheService

from .failover import FailoverRun
from .helpers import eventually, on_each, unique
from .servers import ClusterDeployment, SentinelDeployment
from .test_cluster import own_url as cluster_url
from .test_cluster import victims_on
from .test_near_cache import coherent, filled, near_of
from .test_sentinel import own_url as sentinel_url
from .workers import Worker

FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.3, "near_cache": True}


@pytest.fixture
def deployment(request: pytest.FixtureRequest) -> Iterator[SentinelDeployment]:
    """The session's Sentinel deployment of the flavour given (indirectly), made whole after."""
    flavour = getattr(request, "param", "redis")
    shared: SentinelDeployment = request.getfixturevalue(
        "valkey_sentinel" if flavour == "valkey" else "sentinel_deployment")
    yield shared
    shared.ensure_healthy()


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterDeployment]:
    """The session's cluster of the flavour given (indirectly), made whole after."""
    shared: ClusterDeployment = request.getfixturevalue(
        f"{getattr(request, 'param', 'redis')}_cluster")
    yield shared
    shared.ensure_healthy()


def check_other_process_writes_reach(svc: CacheService, url: str, keys: list[str]) -> None:
    with Worker(url, svc.prefix, socket_timeout=2.0, connect_timeout=2.0) as writer:
        for key in keys:
            writer.call("set", key, "v1")
            filled(svc, key, "v1")
        for key in keys:
            writer.call("set", key, "v2")
        eventually(lambda: all(svc.get(k) == "v2" for k in keys), timeout=3)
        writer.call("delete", *keys)
        eventually(lambda: all(svc.get(k) is None for k in keys), timeout=3)
        writer.exit()


def after_failover(svc: CacheService, url: str, run: FailoverRun, links: int, *,
                   record: Any, label: str) -> None:
    figures = run.finish()
    figures.check(label, record)
    assert svc._target.tracker.links_made > links  # type: ignore[union-attr]
    coherent(svc, timeout=20)
    check_other_process_writes_reach(svc, url, ["after:a", "after:b"])


@on_each("deployment")
def test_sentinel_tracks_the_primary_and_follows_a_failover(
        deployment: SentinelDeployment, record_property: Any) -> None:
    url = sentinel_url(deployment)
    svc = CacheService(unique("near"), url=url, **FAST)
    coherent(svc)
    check_other_process_writes_reach(svc, url, ["a", "b"])
    links = svc._target.tracker.links_made  # type: ignore[union-attr]
    run = FailoverRun(svc, victims=[f"victim:{i}" for i in range(6)])
    run.prepare(deployment.wait_for_replication)
    for key in run.victims:  # held near when the primary dies
        filled(svc, key, run.svc.get(key))
    run.start()
    old = run.kill(deployment.kill_primary)
    run.invalidate_victims_during_outage()
    deployment.wait_for_failover(old, timeout=45)
    run.wait_back_on_redis()
    after_failover(svc, url, run, links, record=record_property, label="sentinel-near")
    svc.close()


@on_each("cluster")
def test_cluster_links_every_primary_and_follows_a_failover(
        cluster: ClusterDeployment, record_property: Any) -> None:
    url = cluster_url(cluster)
    svc = CacheService(unique("near"), url=url, **FAST)
    coherent(svc, timeout=20)
    assert len(svc._target.tracker._linked) == 3  # type: ignore[union-attr]
    spread = [f"k{i}" for i in range(12)]  # over every primary's slots
    check_other_process_writes_reach(svc, url, spread)
    links = svc._target.tracker.links_made  # type: ignore[union-attr]
    node, victims = victims_on(cluster, svc, 6)
    run = FailoverRun(svc, victims=victims)
    run.prepare(cluster.wait_for_replication)
    for key in victims:
        filled(svc, key, svc.get(key))
    run.start()
    run.kill(lambda: cluster.kill_primary(node))
    run.invalidate_victims_during_outage()
    assert len(near_of(svc)) == 0
    cluster.wait_for_promotion(timeout=45)
    run.wait_back_on_redis()
    after_failover(svc, url, run, links, record=record_property, label="cluster-near")
    svc.close()
