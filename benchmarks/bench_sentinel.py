"""Sentinel clients: a GET hit through raw redis-py's Sentinel client and through ours (the
one the services use) against raw redis-py on the primary, same run.

Run from the repository root (it starts its own primary, replica and three sentinels on free
ports, never 6379)::

    .venv/bin/python -m benchmarks.bench_sentinel [--quick]

sync: one thread, GETs back to back. async: N tasks (1, 100) share one client. Ours is the
one the services use (``build_sync_client``/``build_async_client``). Many short rounds in
shuffled order; a ratio is the median over rounds of (time / raw's time in that round), so
machine load hits every side. Failover figures come from ``tests/test_sentinel.py`` (both
``-o log_cli=true``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import SentinelDeployment

from cache_service._redis.backend import build_async_client, build_sync_client
from cache_service.config import Location, TargetOptions, parse_url

VALUE = b'{"id":123,"name":"John Doe","email":"john@example.com","roles":["admin","dev"],' \
        b'"active":true,"score":97.5}'
RAW = "raw redis-py on the primary"


def _report(label: str, times: dict[str, list[float]], ops: int) -> None:
    for name, runs in times.items():
        ratio = statistics.median(t / b for t, b in zip(runs, times[RAW], strict=True))
        print(f"{label:10s} {name:32s} {min(runs) / ops * 1e6:7.1f} us/GET  {ratio:5.2f}x")


def bench_sync(location: Location, primary: tuple[str, int], rounds: int, ops: int) -> None:
    raw = redis.Redis(host=primary[0], port=primary[1])
    raw.set("bench:k", VALUE)
    clients = {RAW: raw,
               "raw redis-py Sentinel client": redis.sentinel.Sentinel(
                   list(location.hosts)).master_for(location.service_name or ""),
               "wire Sentinel client": build_sync_client(location, TargetOptions())}
    times: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(rounds):
        order = list(clients.items())
        random.shuffle(order)
        for name, client in order:
            get: Callable[[str], Any] = client.get
            started = time.perf_counter()
            for _ in range(ops):
                get("bench:k")
            times[name].append(time.perf_counter() - started)
    _report("sync", times, ops)
    for client in clients.values():
        client.close()


async def bench_async(location: Location, primary: tuple[str, int], rounds: int,
                      ops: int) -> None:
    clients = {RAW: redis.asyncio.Redis(host=primary[0], port=primary[1]),
               "raw redis-py Sentinel client": redis.asyncio.sentinel.Sentinel(
                   list(location.hosts)).master_for(location.service_name or ""),
               "wire Sentinel client": build_async_client(location, TargetOptions())}
    for tasks in (1, 100):
        per_task = max(ops // min(tasks, 10), 1)  # 100 tasks: 10x the GETs, past warm-up
        times: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(rounds):
            order = list(clients.items())
            random.shuffle(order)
            for name, client in order:
                async def worker(client: Any = client, n: int = per_task) -> None:
                    for _ in range(n):
                        await client.get("bench:k")

                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(tasks)))
                times[name].append(time.perf_counter() - started)
        _report(f"async {tasks:3d}", times, per_task * tasks)
    for client in clients.values():
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    rounds, ops = (5, 1000) if args.quick else (15, 3000)
    with SentinelDeployment() as deployment:
        location = parse_url(deployment.url)
        primary = deployment.primary().address
        bench_sync(location, primary, rounds, ops)
        asyncio.run(bench_async(location, primary, rounds, ops))


if __name__ == "__main__":
    main()
