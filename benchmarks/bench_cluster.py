"""Redis Cluster over our own connection layer against redis-py's RedisCluster, same run.

Run from the repository root (it starts its own 6-node cluster on free ports, never 6379)::

    .venv/bin/python -m benchmarks.bench_cluster [--quick]

sync: GET hits of 32 keys spread over the 3 primaries, with raw ``redis.cluster.RedisCluster``
vs our ``WireClusterClient``, and ``CacheService.get`` hits (our layer: the only one for a
cluster since issue 18; the figures over redis-py's cluster in the docs are from before).
async: N tasks (1, 100) share one client and await GET hits back to back: raw
``redis.asyncio.cluster.RedisCluster`` vs ``AsyncWireClusterClient`` (one auto-pipelined
connection per node) and ``AsyncCacheService.get``. Many short rounds in shuffled
order; a ratio is the median over rounds of (time / raw's time in that round), so machine load
hits both sides. batches (sync): ``get_many``/``set_many`` of 100 keys (about 100 slots),
against raw ``RedisCluster.mget_nonatomic`` / ``mset_nonatomic``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import ClusterDeployment

from cache_service import AsyncCacheService, CacheService
from cache_service._redis.backend import build_async_client, build_sync_client
from cache_service.config import TargetOptions, parse_url

VALUE = b'{"id":123,"name":"John Doe","email":"john@example.com","roles":["admin","dev"],' \
        b'"active":true,"score":97.5}'
KEYS = [f"bench:{i}" for i in range(32)]
RAW = "raw redis-py RedisCluster"


def _ratios(times: dict[str, list[float]], base: str) -> dict[str, float]:
    return {name: statistics.median(t / b for t, b in zip(runs, times[base], strict=True))
            for name, runs in times.items()}


def _url(cluster: ClusterDeployment) -> str:
    """A URL of the cluster."""
    return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in cluster.startup_nodes) + "/0"


def bench_sync(cluster: ClusterDeployment, rounds: int, ops: int) -> None:
    host, port = cluster.startup_nodes[0]
    raw = RedisCluster(startup_nodes=[ClusterNode(host, port)])
    for key in KEYS:
        raw.set(key, VALUE)
    url_wire = _url(cluster)
    ours = build_sync_client(parse_url(url_wire), TargetOptions())
    svc_wire = CacheService("bench", url=url_wire, socket_timeout=2.0)
    for key in KEYS:
        svc_wire.set(key, VALUE.decode())
    cases: dict[str, Callable[[str], object]] = {
        RAW: raw.get, "WireClusterClient": ours.get, "CacheService.get, wire": svc_wire.get,
    }
    assert ours.get(KEYS[0]) == VALUE
    assert svc_wire.get(KEYS[0]) == VALUE.decode()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        order = list(cases.items())
        random.shuffle(order)
        for name, get in order:
            gc.disable()
            start = time.perf_counter()
            for i in range(ops):
                get(KEYS[i & 31])
            times[name].append((time.perf_counter() - start) / ops * 1e6)
            gc.enable()
    ratios = _ratios(times, RAW)
    print("sync GET hit (µs per call, median; ratio to raw RedisCluster in the same round)")
    for name, runs in times.items():
        print(f"  {name:30s} {statistics.median(runs):7.1f} µs   {ratios[name]:5.2f}x")
    raw.close()
    ours.close()
    svc_wire.close()


def bench_batches(cluster: ClusterDeployment, rounds: int, ops: int) -> None:
    host, port = cluster.startup_nodes[0]
    raw = RedisCluster(startup_nodes=[ClusterNode(host, port)])
    svc_wire = CacheService("batch", url=_url(cluster), socket_timeout=2.0)
    names = [f"many:{i}" for i in range(100)]
    values = dict.fromkeys(names, VALUE.decode())
    full = [svc_wire.full_key(n) for n in names]
    raw_keys = [f"raw:{n}" for n in names]
    svc_wire.set_many(values)
    cases: dict[str, Callable[[], object]] = {
        "raw mget_nonatomic(100)": lambda: raw.mget_nonatomic(full),
        "get_many(100), wire": lambda: svc_wire.get_many(names),
        "raw mset_nonatomic(100)": lambda: raw.mset_nonatomic(dict.fromkeys(raw_keys, VALUE)),
        "set_many(100), wire": lambda: svc_wire.set_many(values),
    }
    assert svc_wire.get_many(names) == values
    calls = max(ops // 50, 10)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        order = list(cases.items())
        random.shuffle(order)
        for name, call in order:
            start = time.perf_counter()
            for _ in range(calls):
                call()
            times[name].append((time.perf_counter() - start) / calls * 1e6)
    gets = _ratios({k: v for k, v in times.items() if "get" in k}, "raw mget_nonatomic(100)")
    sets = _ratios({k: v for k, v in times.items() if "set" in k}, "raw mset_nonatomic(100)")
    print("sync batches of 100 keys (µs per call, median; ratio to raw in the same round)")
    for name, runs in times.items():
        ratio = gets.get(name) or sets[name]
        print(f"  {name:30s} {statistics.median(runs):8.0f} µs   {ratio:5.2f}x")
    assert svc_wire.get_many(names) == values
    svc_wire.clear_all()
    raw.delete(*raw_keys)
    raw.close()
    svc_wire.close()


async def bench_async(cluster: ClusterDeployment, rounds: int, ops: int) -> None:
    host, port = cluster.startup_nodes[0]
    raw = AsyncRedisCluster(host=host, port=port, max_connections=2000)
    url_wire = _url(cluster)
    ours: Any = build_async_client(parse_url(url_wire), TargetOptions(socket_timeout=5.0))
    svc_wire = AsyncCacheService("bench", url=url_wire, socket_timeout=5.0)
    getters: dict[str, Callable[[str], Awaitable[object]]] = {
        RAW: raw.get, "AsyncWireClusterClient": ours.get,
        "AsyncCacheService.get, wire": svc_wire.get,
    }
    for name, get in getters.items():
        assert await get(KEYS[0]) in (VALUE, VALUE.decode()), name
    print("async GET hit (µs per GET, median; throughput vs raw async RedisCluster, same round)")
    for tasks in (1, 100):
        per_task = max(ops // tasks, 10)
        times: dict[str, list[float]] = {name: [] for name in getters}
        for _ in range(rounds):
            order = list(getters.items())
            random.shuffle(order)
            for name, get in order:

                async def worker(n: int, get: Callable[[str], Awaitable[object]] = get,
                                 per_task: int = per_task) -> None:
                    for i in range(per_task):
                        await get(KEYS[(n + i) & 31])

                start = time.perf_counter()
                await asyncio.gather(*[worker(n) for n in range(tasks)])
                times[name].append((time.perf_counter() - start) / (per_task * tasks) * 1e6)
        ratios = _ratios(times, RAW)
        for name, runs in times.items():
            print(f"  {tasks:4d} tasks  {name:32s} {statistics.median(runs):7.1f} µs   "
                  f"{1 / ratios[name]:5.1f}x throughput")
    await raw.aclose()
    await ours.aclose()
    await svc_wire.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, rough figures")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ops", type=int, default=4000)
    args = parser.parse_args()
    rounds, ops = (3, 1000) if args.quick else (args.rounds, args.ops)
    with ClusterDeployment() as cluster:
        bench_sync(cluster, rounds, ops)
        bench_batches(cluster, rounds, ops)
        asyncio.run(bench_async(cluster, rounds, ops))


if __name__ == "__main__":
    main()
