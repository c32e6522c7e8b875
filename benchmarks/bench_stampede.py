"""Cache stampede: a burst of concurrent misses on one key, with and without protection.

Run from the repository root (it starts its own redis-server on a free port, never 6379)::

    .venv/bin/python benchmarks/bench_stampede.py [--burst 100] [--query-ms 50]

The loader stands for a 50 ms database query. For each scenario: how many times the loader
ran for the burst, the burst's wall time (first call to last answer), and the median and
slowest single call. "naive" is the
seed's cache-aside (``get``; on a miss query, then ``set``); the others use ``get_or_set``.
The stale-while-revalidate burst arrives just after the value expired.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import RedisServer

from cache_service import AsyncCacheService, CacheService

Row = tuple[str, int, float, list[float]]


class Loader:
    """Counts its calls; sleeps like a database query."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self._lock = threading.Lock()

    async def aload(self) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        return {"id": 1, "rows": list(range(20))}

    def load(self) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        time.sleep(self.seconds)
        return {"id": 1, "rows": list(range(20))}


async def burst(n: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, list[float]]:
    """Wall time of ``n`` concurrent calls, and each call's latency."""
    latencies: list[float] = []

    async def timed() -> None:
        begin = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - begin)

    start = time.perf_counter()
    await asyncio.gather(*(timed() for _ in range(n)))
    return time.perf_counter() - start, latencies


async def async_rows(url: str, n: int, query: float) -> list[Row]:
    rows: list[Row] = []
    cache = AsyncCacheService("bench-stampede", url=url)

    async def scenario(name: str, call: Callable[[Loader], Callable[[], Awaitable[Any]]]) -> None:
        await cache.clear_all()
        loader = Loader(query)
        wall, latencies = await burst(n, call(loader))
        rows.append((name, loader.calls, wall, latencies))

    def naive(loader: Loader) -> Callable[[], Awaitable[Any]]:
        async def call() -> Any:
            value = await cache.get("k")
            if value is None:
                value = await loader.aload()
                await cache.set("k", value, ttl=60)
            return value
        return call

    await scenario(f"asyncio, {n} tasks: naive cache-aside", naive)
    await scenario(f"asyncio, {n} tasks: get_or_set", lambda loader: lambda: cache.get_or_set(
        "k", loader.aload, ttl=60))
    await scenario(f"asyncio, {n} tasks: get_or_set(lock=True)",
                   lambda loader: lambda: cache.get_or_set("k", loader.aload, ttl=60, lock=True))

    # stale-while-revalidate: the value expired a moment ago; the burst gets it at once
    await cache.clear_all()
    loader = Loader(query)
    await cache.get_or_set("k", loader.aload, ttl=0.05, stale_while_revalidate=30)
    await asyncio.sleep(0.1)
    loader.calls = 0
    wall, latencies = await burst(n, lambda: cache.get_or_set("k", loader.aload, ttl=0.05,
                                                              stale_while_revalidate=30))
    rows.append((f"asyncio, {n} tasks: stale-while-revalidate", loader.calls, wall, latencies))
    await cache.clear_all()
    await cache.aclose()
    return rows


def thread_rows(url: str, n: int, query: float) -> list[Row]:
    rows: list[Row] = []
    cache = CacheService("bench-stampede-sync", url=url)

    def run(name: str, call: Callable[[Loader], Any]) -> None:
        cache.clear_all()
        loader = Loader(query)
        latencies: list[float] = []
        barrier = threading.Barrier(n)

        def timed() -> None:
            barrier.wait()  # every thread started: the burst is simultaneous
            begin = time.perf_counter()
            call(loader)
            latencies.append(time.perf_counter() - begin)

        threads = [threading.Thread(target=timed) for _ in range(n)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows.append((name, loader.calls, time.perf_counter() - start, latencies))

    def naive(loader: Loader) -> Any:
        value = cache.get("k")
        if value is None:
            value = loader.load()
            cache.set("k", value, ttl=60)
        return value

    run(f"threads, {n}: naive cache-aside", naive)
    run(f"threads, {n}: get_or_set", lambda loader: cache.get_or_set("k", loader.load, ttl=60))
    cache.clear_all()
    cache.close()
    return rows


def main(n: int, query_ms: float) -> None:
    with RedisServer(name="bench-stampede") as server:
        rows = asyncio.run(async_rows(server.url, n, query_ms / 1000))
        rows += thread_rows(server.url, min(n, 50), query_ms / 1000)
    print(f"\nstampede: concurrent misses on one key, loader = {query_ms:g} ms query")
    print(f"  {'scenario':<46}{'loader calls':>13}{'burst wall':>12}{'p50 call':>10}"
          f"{'max call':>10}")
    for name, calls, wall, latencies in rows:
        print(f"  {name:<46}{calls:>13}{wall * 1000:>10.0f}ms"
              f"{statistics.median(latencies) * 1000:>8.1f}ms{max(latencies) * 1000:>8.0f}ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--query-ms", type=float, default=50.0)
    args = parser.parse_args()
    main(args.burst, args.query_ms)
