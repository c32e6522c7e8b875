"""Redis Cluster: keys across slots, pattern invalidation on every primary, and failovers.

The whole contract suite also runs over the session's ``redis_cluster`` and ``valkey_cluster``
(tests/backends.py); this module adds what only a cluster has, on Valkey as well where a test
is marked so (the server matrix: the slot spread, SCAN paging, a frozen primary, a failover).
The failover tests build their services on the nodes listed in another order, so they get
their own target and breaker settings, and call ``ensure_healthy()`` afterwards. They come
last in the module. Every test runs on our own cluster client (``layer``: "wire", the only
connection layer for a cluster); its services list the nodes in yet another order, so they
have targets of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cache_service import AsyncCacheService, CacheService, ConfigurationError
from cache_service._redis.slots import key_slot

from .failover import FailoverRun, async_failover
from .helpers import eventually, on_each, on_flavours, unique
from .servers import ClusterDeployment, free_port

FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.3}


@pytest.fixture(params=["wire"])
def layer(request: pytest.FixtureRequest) -> str:
    """The connection layer the test's services use (a cluster has only ours)."""
    return str(request.param)


def url_of(hosts: list[tuple[str, int]], layer: str) -> str:
    """A cluster URL of ``hosts``; on the wire layer rotated by one (another target)."""
    if layer == "wire":
        hosts = hosts[1:] + hosts[:1]
    return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in hosts) + "/0"


def own_url(cluster: ClusterDeployment, layer: str = "redis-py") -> str:
    """The cluster's URL with its nodes listed in another order (another target)."""
    return url_of(list(reversed(cluster.startup_nodes)), layer)


def session_url(cluster: ClusterDeployment, layer: str) -> str:
    """The session's cluster URL (redis-py), or the wire layer's own."""
    return cluster.cluster_url if layer == "redis-py" else url_of(cluster.startup_nodes, layer)


def slot(full_key: str) -> int:
    """The hash slot of a Redis key."""
    return key_slot(full_key)


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterDeployment]:
    """The session cluster (of the flavour given as indirect parameter, else Redis), made
    whole again after a test that kills or freezes nodes."""
    deployment: ClusterDeployment = request.getfixturevalue(
        f"{getattr(request, 'param', 'redis')}_cluster")
    yield deployment
    deployment.ensure_healthy()


def keys_per_primary(cluster: ClusterDeployment, svc: CacheService) -> dict[int, int]:
    """How many of ``svc``'s keys each primary holds (port -> count)."""
    counts = {}
    for node in cluster.primaries():
        with node.client() as raw:
            counts[node.port] = sum(1 for _ in raw.scan_iter(f"cs:{svc.prefix}::*", count=500))
    return counts


def test_configuration_by_url_and_by_flag(redis_cluster: ClusterDeployment, layer: str) -> None:
    host, port = redis_cluster.startup_nodes[0 if layer == "redis-py" else 1]
    prefix = unique()
    by_url = CacheService(prefix, url=session_url(redis_cluster, layer), connection=layer)
    by_flag = CacheService(prefix, host=host, port=port, cluster=True, connection=layer)
    assert by_flag.location.startswith("redis+cluster://")
    by_url.set("k", [1, 2])
    assert by_flag.get("k") == [1, 2]
    assert by_flag.is_redis_available() is True
    with pytest.raises(ConfigurationError, match="database 0"):
        CacheService(prefix, url=redis_cluster.cluster_url.replace("/0", "/3"))


def test_keys_of_one_prefix_spread_over_every_primary(each_cluster: ClusterDeployment,
                                                      layer: str) -> None:
    svc = CacheService(unique(), url=session_url(each_cluster, layer), connection=layer)
    for i in range(60):
        svc.set(f"user:{i}", i)
    counts = keys_per_primary(each_cluster, svc)
    assert len(counts) == 3
    assert all(n > 0 for n in counts.values()), counts
    assert sum(counts.values()) == 60
    assert svc.clear_all() == 60


def test_multi_key_delete_spans_slots(redis_cluster: ClusterDeployment, layer: str) -> None:
    svc = CacheService(unique(), url=session_url(redis_cluster, layer), connection=layer)
    keys = [f"k{i}" for i in range(20)]
    for key in keys:
        svc.set(key, key)
    assert len({slot(svc.full_key(k)) for k in keys}) > 10
    assert svc.delete(*keys, "never-set") == 20
    assert [svc.get(k) for k in keys] == [None] * 20


def test_pattern_invalidation_pages_through_every_primary(
        each_cluster: ClusterDeployment, monkeypatch: pytest.MonkeyPatch, layer: str) -> None:
    """Small SCAN pages force several cursors per node; every match on every primary goes,
    and foreign keys matching the pattern stay."""
    monkeypatch.setattr("cache_service._ops.remove.SCAN_COUNT", 5)
    svc = CacheService(unique(), url=session_url(each_cluster, layer), connection=layer)
    for i in range(150):
        svc.set(f"user:{i}", i)
        svc.set(f"order:{i}", i)
    with each_cluster.client() as raw:
        raw.set(svc.full_key("user:foreign-string"), b"not ours")
        raw.hset(svc.full_key("user:foreign-hash"), "f", "v")
    assert svc.invalidate_pattern("user:*") == 150
    assert all(svc.get(f"user:{i}") is None for i in range(150))
    assert svc.get("order:7") == 7
    assert svc.clear_all() == 150
    with each_cluster.client() as raw:
        left = sorted(raw.scan_iter(f"cs:{svc.prefix}::*"))
        assert left == sorted([svc.full_key("user:foreign-hash").encode(),
                               svc.full_key("user:foreign-string").encode()])
        raw.delete(*left)


def test_down_at_construction_serves_memory_fast(layer: str) -> None:
    dead = ",".join(f"127.0.0.1:{free_port()}" for _ in range(3))
    started = time.perf_counter()
    svc = CacheService(unique(), url=f"redis+cluster://{dead}", connection=layer, **FAST)
    svc.set("k", "memory")
    assert svc.get("k") == "memory"
    assert svc.invalidate_pattern("*") == 1
    assert svc.is_redis_available() is False
    assert time.perf_counter() - started < 2.0
    assert svc.stats()["target"]["breaker_state"] != "closed"


FIRST_CALLS = ["get", "delete-many", "invalidate", "get-many", "set-many"]


@on_flavours("cluster", "first", redis=FIRST_CALLS, valkey=["get", "delete-many"])
def test_frozen_primary_bounds_each_call(cluster: ClusterDeployment, first: str,
                                         layer: str) -> None:
    """A hung primary costs about one socket timeout, whatever the first call is (a
    multi-key delete too), then the breaker answers from memory; once the node answers again
    the service is back on Redis."""
    svc = CacheService(unique(), url=own_url(cluster, layer), socket_timeout=0.2,
                       connect_timeout=0.2, breaker_min_backoff=0.3, breaker_max_backoff=0.3,
                       connection=layer)
    keys = [f"k{i}" for i in range(40)]
    for key in keys:
        svc.set(key, "v")
    node = cluster.primary_for_key(svc.full_key("k0"))
    node.freeze()
    try:
        started = time.perf_counter()
        if first == "get":
            svc.get("k0")
        elif first == "delete-many":
            svc.delete(*keys)
        elif first == "get-many":  # one MGET per slot, one after the other: one timeout
            assert len(svc.get_many(keys)) < len(keys)
        elif first == "set-many":
            svc.set_many(dict.fromkeys(keys, "new"))
            assert svc.get_many(keys) == dict.fromkeys(keys, "new")  # from memory
        else:
            svc.invalidate_pattern("k*")
        first_call = time.perf_counter() - started
        assert first_call < 1.0, first_call
        timings = []
        for _ in range(100):
            started = time.perf_counter()
            svc.get("k0")
            timings.append(time.perf_counter() - started)
        assert max(timings) < 1.0, max(timings)
        assert sorted(timings)[50] < 0.005
        assert svc.stats()["target"]["breaker_state"] != "closed"
    finally:
        node.thaw()
    assert eventually(svc.is_redis_available, timeout=20)
    svc.close()


def victims_on(cluster: ClusterDeployment, svc: Any, count: int) -> tuple[Any, list[str]]:
    """The primary owning ``victim:0`` and ``count`` victim keys it owns."""
    node = cluster.primary_for_key(svc.full_key("victim:0"))
    victims = [k for k in (f"victim:{i}" for i in range(300))
               if cluster.primary_for_key(svc.full_key(k)) is node][:count]
    return node, victims


@on_each("cluster")
def test_failover_under_load(cluster: ClusterDeployment, record_property: Any,
                             layer: str) -> None:
    """Kill the primary owning the victims' slots mid-load: no exception, the replica is
    promoted and the service returns to Redis by itself, and no value invalidated during the
    failover is ever served again."""
    svc = CacheService(unique(), url=own_url(cluster, layer), connection=layer, **FAST)
    node, victims = victims_on(cluster, svc, 6)
    run = FailoverRun(svc, victims=victims)
    run.prepare(cluster.wait_for_replication)
    run.start()
    run.kill(lambda: cluster.kill_primary(node))
    run.invalidate_victims_during_outage()
    cluster.wait_for_promotion(timeout=45)
    run.wait_back_on_redis()
    figures = run.finish()
    svc.close()
    figures.check(f"cluster[{layer}]", record_property)
    with cluster.client() as raw:  # deleted, and overwritten in memory: gone everywhere
        assert sum(raw.exists(svc.full_key(k)) for k in victims) == 0


def test_async_service_through_a_failover(cluster: ClusterDeployment,
                                          record_property: Any, layer: str) -> None:
    """AsyncCacheService (redis.asyncio's RedisCluster, or ours) through a primary kill."""
    hosts = cluster.startup_nodes[2:] + cluster.startup_nodes[:2]
    url = url_of(hosts, layer)

    async def main() -> Any:
        async with AsyncCacheService(unique(), url=url, connection=layer, **FAST) as svc:
            for i in range(30):
                await svc.set(f"user:{i}", i)
            assert await svc.delete("user:1", "user:2", "user:3") == 3
            assert await svc.invalidate_pattern("user:1*") == 10
            assert await svc.clear_all() == 17
            assert await svc.is_redis_available() is True
            node, victims = victims_on(cluster, svc, 4)
            return await async_failover(svc, victims, replicate=cluster.wait_for_replication,
                                        kill=lambda: cluster.kill_primary(node))

    asyncio.run(main()).check(f"cluster_asyncio[{layer}]", record_property)
