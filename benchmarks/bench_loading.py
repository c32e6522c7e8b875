"""Loading under pressure (issue 20, item 5): soft/hard timeouts and eager refresh, measured.

Run from the repository root (it starts its own redis-server on a free port, never 6379)::

    .venv/bin/python -m benchmarks.bench_loading [--quick]

Writes benchmarks/results/loading.txt. Targets:

* a request behind a 2 s loader waits no longer than ``soft_timeout`` + 1 ms when a stale value
  exists: each request finds its key expired (kept as fail-safe data, ``stale_if_error``) and
  a loader that takes 2 s; we report the overshoot past ``soft_timeout`` (median, p95, max),
  for one caller at a time and for a burst of concurrent callers of one key, blocking
  (threads) and asyncio (tasks); ``hard_timeout`` with no stale value (``default=``) likewise;
* eager refresh: 0 requests see a miss on a hot key across 10 expiries: callers read one key
  in a loop (threads, then tasks) for 10 TTLs with ``eager_refresh=0.5`` and a 50 ms loader;
  we count the misses (``stats()["misses"]``), the loads, and the slowest request.

Absolute times depend on the machine's load (printed with the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import RedisServer

from cache_service import AsyncCacheService, CacheService
from cache_service._runtime.background import RUNNER

RESULTS = Path(__file__).resolve().parent / "results"
SOFT = 0.1  # soft_timeout of the timed runs
DB = 2.0  # the slow database call behind them


def quantiles(samples: list[float]) -> tuple[float, float, float]:
    """Median, p95, max (milliseconds)."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p95 * 1e3, ordered[-1] * 1e3


def drain() -> None:
    while RUNNER.running:
        time.sleep(0.01)


def expired_keys(svc: CacheService, n: int, tag: str) -> list[str]:
    """``n`` keys whose value expired (fresh for 0.2 s) and is kept as fail-safe data."""
    keys = [f"{tag}:{i}" for i in range(n)]
    for k in keys:
        svc.get_or_set(k, lambda: "old", ttl=0.2, stale_if_error=3600)
    time.sleep(0.3)
    return keys


def floor_sync(n: int) -> list[float]:
    """The platform's floor: how late ``threading.Event().wait(SOFT)`` returns."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        threading.Event().wait(SOFT)
        out.append(time.perf_counter() - started - SOFT)
    return out


def floor_async(n: int) -> list[float]:
    """The event loop's floor: how late ``asyncio.sleep(SOFT)`` returns."""
    out: list[float] = []

    async def main() -> None:
        for _ in range(n):
            started = time.perf_counter()
            await asyncio.sleep(SOFT)
            out.append(time.perf_counter() - started - SOFT)

    asyncio.run(main())
    return out


def timed_sync(url: str, n: int, burst: int) -> dict[str, list[float]]:
    svc = CacheService("bench-loading-sync", url=url)
    svc.clear_all()
    slow = lambda: time.sleep(DB) or "new"  # noqa: E731
    out: dict[str, list[float]] = {"one caller": [], f"{burst} threads, one key": [],
                                   "hard_timeout, no stale (default=)": []}
    for k in expired_keys(svc, n, "one"):
        started = time.perf_counter()
        assert svc.get_or_set(k, slow, ttl=60, stale_if_error=3600, soft_timeout=SOFT) == "old"
        out["one caller"].append(time.perf_counter() - started - SOFT)
    for k in expired_keys(svc, max(1, n // 10), "burst"):
        gate = threading.Barrier(burst)
        samples: list[float] = []

        def call(key: str = k, barrier: threading.Barrier = gate,
                 into: list[float] = samples) -> None:
            barrier.wait()
            started = time.perf_counter()
            svc.get_or_set(key, slow, ttl=60, stale_if_error=3600, soft_timeout=SOFT)
            into.append(time.perf_counter() - started - SOFT)

        threads = [threading.Thread(target=call) for _ in range(burst)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out[f"{burst} threads, one key"].extend(samples)
    for i in range(n):
        started = time.perf_counter()
        assert svc.get_or_set(f"none:{i}", slow, hard_timeout=SOFT, default="d") == "d"
        out["hard_timeout, no stale (default=)"].append(time.perf_counter() - started - SOFT)
    drain()
    svc.clear_all()
    return out


def timed_async(url: str, n: int, burst: int) -> dict[str, list[float]]:
    setup = CacheService("bench-loading-async", url=url)
    setup.clear_all()
    keys = expired_keys(setup, n, "one")
    burst_keys = expired_keys(setup, max(1, n // 10), "burst")
    out: dict[str, list[float]] = {"one task": [], f"{burst} tasks, one key": []}

    async def slow() -> str:
        await asyncio.sleep(DB)
        return "new"

    async def main() -> None:
        svc = AsyncCacheService("bench-loading-async", url=url)

        async def one(k: str, into: list[float]) -> None:
            started = time.perf_counter()
            assert await svc.get_or_set(k, slow, ttl=60, stale_if_error=3600,
                                        soft_timeout=SOFT) == "old"
            into.append(time.perf_counter() - started - SOFT)

        for k in keys:
            await one(k, out["one task"])
        for k in burst_keys:
            await asyncio.gather(*(one(k, out[f"{burst} tasks, one key"])
                                   for _ in range(burst)))
        while RUNNER.running:  # the loads finish (and store) before the loop ends
            await asyncio.sleep(0.01)
        await svc.clear_all()
        await svc.aclose()

    asyncio.run(main())
    return out


def eager_sync(url: str, ttl: float, threads: int) -> dict[str, Any]:
    svc = CacheService("bench-eager-sync", url=url)
    svc.clear_all()
    loads = [0]

    def load() -> int:
        loads[0] += 1
        time.sleep(0.05)
        return loads[0]

    svc.get_or_set("hot", load, ttl=ttl, eager_refresh=0.5)
    before = svc.stats()["misses"]
    stop = time.monotonic() + 10 * ttl
    worst = [0.0]
    calls = [0]

    def reader() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            svc.get_or_set("hot", load, ttl=ttl, eager_refresh=0.5)
            worst[0] = max(worst[0], time.perf_counter() - started)
            calls[0] += 1
            time.sleep(0.001)

    pool = [threading.Thread(target=reader) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    drain()
    misses = svc.stats()["misses"] - before
    svc.clear_all()
    return {"requests": calls[0], "misses": misses, "loads": loads[0] - 1,
            "slowest_ms": worst[0] * 1e3}


def eager_async(url: str, ttl: float, tasks: int) -> dict[str, Any]:
    result: dict[str, Any] = {}

    async def main() -> None:
        svc = AsyncCacheService("bench-eager-async", url=url)
        await svc.clear_all()
        loads = [0]

        async def load() -> int:
            loads[0] += 1
            await asyncio.sleep(0.05)
            return loads[0]

        await svc.get_or_set("hot", load, ttl=ttl, eager_refresh=0.5)
        before = (await svc.stats())["misses"]
        stop = time.monotonic() + 10 * ttl
        worst = [0.0]
        calls = [0]

        async def reader() -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                await svc.get_or_set("hot", load, ttl=ttl, eager_refresh=0.5)
                worst[0] = max(worst[0], time.perf_counter() - started)
                calls[0] += 1
                await asyncio.sleep(0.001)

        await asyncio.gather(*(reader() for _ in range(tasks)))
        while RUNNER.running:
            await asyncio.sleep(0.01)
        result.update(requests=calls[0], misses=(await svc.stats())["misses"] - before,
                      loads=loads[0] - 1, slowest_ms=worst[0] * 1e3)
        await svc.clear_all()
        await svc.aclose()

    asyncio.run(main())
    return result


def render(timed: dict[str, list[float]], eager: dict[str, dict[str, Any]], quick: bool,
           load: Callable[[], tuple[float, float, float]]) -> str:
    lines = [
        f"loading under pressure (benchmarks/bench_loading.py{' --quick' if quick else ''})",
        "machine load average at the end: {:.2f} {:.2f} {:.2f}".format(*load())
        + f" on {os.cpu_count()} cores (shared with other jobs: absolute times are noisy)",
        "",
        f"overshoot past soft_timeout={SOFT * 1e3:.0f} ms, loader = {DB:.0f} s, a stale value "
        "exists (target: <= 1 ms)",
        "(a floor row: the same wait with no cache at all, in the same run)",
        f"  {'callers':52} {'n':>5} {'median':>9} {'p95':>9} {'max':>9}",
    ]
    for name, samples in timed.items():
        med, p95, top = quantiles(samples)
        lines.append(f"  {name:52} {len(samples):>5} {med:>7.3f}ms {p95:>7.3f}ms "
                     f"{top:>7.3f}ms")
    lines += ["", "eager refresh, eager_refresh=0.5, loader 50 ms, 10 expiries of the hot key "
              "(target: 0 misses)",
              f"  {'callers':52} {'requests':>9} {'misses':>7} {'loads':>6} {'slowest':>9}"]
    for name, row in eager.items():
        lines.append(f"  {name:52} {row['requests']:>9} {row['misses']:>7} {row['loads']:>6} "
                     f"{row['slowest_ms']:>7.1f}ms")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter TTLs")
    args = parser.parse_args()
    n, burst = (20, 20) if args.quick else (100, 50)
    ttl = 0.5 if args.quick else 1.0
    with RedisServer(name="bench-loading") as server:
        timed = {"blocking: floor, Event().wait(soft_timeout) alone": floor_sync(n)}
        timed.update({f"blocking: {k}": v for k, v in timed_sync(server.url, n, burst).items()})
        timed["asyncio: floor, asyncio.sleep(soft_timeout) alone"] = floor_async(n)
        timed.update({f"asyncio: {k}": v for k, v in timed_async(server.url, n, burst).items()})
        eager = {f"{4} threads, ttl {ttl:g}s": eager_sync(server.url, ttl, 4),
                 f"{20} tasks, ttl {ttl:g}s": eager_async(server.url, ttl, 20)}
    text = render(timed, eager, args.quick, os.getloadavg)
    print(text, end="")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "loading.txt").write_text(text)


if __name__ == "__main__":
    main()
