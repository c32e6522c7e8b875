"""The connection layer (``cache_service._wire``) against raw redis-py, same run.

Run from the repository root (it starts its own redis-server on a free port, never 6379)::

    .venv/bin/python -m benchmarks.bench_wire [--quick] [--loop asyncio|uvloop]

sync: a GET hit (a 120-byte value, bytes back) with raw ``redis.Redis`` vs ``SyncConnection``
and ``ThreadConnections`` (adds the per-thread lookup); a SET too. async: N tasks (1, 10, 100,
1,000) share one client and await GETs back to back; ``redis.asyncio`` with its pool vs one
auto-pipelined ``AsyncConnection``, and the same connection writing each request at once
(``direct write``: the design alternative). Many short rounds in shuffled order; a ratio is
the median over rounds of (time / raw's time in that round), so machine load hits both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
import redis.asyncio
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import RedisServer

from cache_service._wire import AsyncConnection, SyncConnection, ThreadConnections, WireSettings
from cache_service._wire import connect as wire_connect

VALUE = b'{"id":123,"name":"John Doe","email":"john@example.com","roles":["admin","dev"],' \
        b'"active":true,"score":97.5}'


def _median_ratios(times: dict[str, list[float]], base: str) -> dict[str, float]:
    return {name: statistics.median(t / b for t, b in zip(runs, times[base], strict=True))
            for name, runs in times.items()}


def bench_sync(port: int, rounds: int, ops: int) -> None:
    settings = WireSettings(port=port)
    raw = redis.Redis(port=port)
    raw.set("bench:k", VALUE)
    ours = SyncConnection(settings)
    pool = ThreadConnections(settings)
    cases: dict[str, Callable[[], object]] = {
        "raw redis-py GET": lambda: raw.get("bench:k"),
        "SyncConnection GET": lambda: ours.execute("GET", "bench:k"),
        "ThreadConnections GET": lambda: pool.execute("GET", "bench:k"),
        "raw redis-py SET": lambda: raw.set("bench:s", VALUE),
        "SyncConnection SET": lambda: ours.execute("SET", "bench:s", VALUE),
    }
    assert ours.execute("GET", "bench:k") == raw.get("bench:k") == VALUE
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        order = list(cases.items())
        random.shuffle(order)
        for name, call in order:
            gc.disable()
            start = time.perf_counter()
            for _ in range(ops):
                call()
            times[name].append((time.perf_counter() - start) / ops * 1e6)
            gc.enable()
    get_ratio = _median_ratios({k: v for k, v in times.items() if "GET" in k}, "raw redis-py GET")
    set_ratio = _median_ratios({k: v for k, v in times.items() if "SET" in k}, "raw redis-py SET")
    print("sync (µs per call, median; ratio to raw redis-py in the same round)")
    for name, runs in times.items():
        ratio = get_ratio.get(name) or set_ratio[name]
        print(f"  {name:26s} {statistics.median(runs):7.1f} µs   {ratio:5.2f}x")
    raw.close()
    ours.close()
    pool.close()


def _direct(connection: AsyncConnection) -> AsyncConnection:
    """The same connection writing each request at once instead of once per loop iteration."""

    def queue(self: AsyncConnection, data: bytes, deadline: float) -> None:
        assert self._transport is not None
        self._transport.write(data)
        if deadline < self._timer_at:
            self._arm(deadline)

    connection._queue = types.MethodType(queue, connection)  # type: ignore[method-assign]
    return connection


async def bench_async(port: int, rounds: int, ops: int) -> None:
    raw = redis.asyncio.Redis(port=port, max_connections=2000)
    await raw.set("bench:k", VALUE)
    settings = WireSettings(port=port, request_timeout=5.0)
    ours = await wire_connect(settings, max_in_flight=4096)
    direct = _direct(await wire_connect(settings, max_in_flight=4096))
    getters: dict[str, Callable[[], Awaitable[object]]] = {
        "raw redis.asyncio (pool)": lambda: raw.get("bench:k"),
        "AsyncConnection": lambda: ours.execute("GET", "bench:k"),
        "AsyncConnection, direct write": lambda: direct.execute("GET", "bench:k"),
    }
    for get in getters.values():
        assert await get() == VALUE
    print("async (µs per GET, median; throughput vs raw redis.asyncio in the same round)")
    for tasks in (1, 10, 100, 1000):
        per_task = max(ops // tasks, 5)
        times: dict[str, list[float]] = {name: [] for name in getters}
        for _ in range(rounds):
            order = list(getters.items())
            random.shuffle(order)
            for name, get in order:

                async def worker(get: Callable[[], Awaitable[object]] = get,
                                 per_task: int = per_task) -> None:
                    for _ in range(per_task):
                        await get()

                start = time.perf_counter()
                await asyncio.gather(*[worker() for _ in range(tasks)])
                times[name].append((time.perf_counter() - start) / (per_task * tasks) * 1e6)
        ratios = _median_ratios(times, "raw redis.asyncio (pool)")
        for name, runs in times.items():
            print(f"  {tasks:5d} tasks  {name:30s} {statistics.median(runs):7.1f} µs   "
                  f"{1 / ratios[name]:5.1f}x throughput")
    await raw.aclose()
    ours.close()
    direct.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, rough figures")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    rounds, ops = (3, 1000) if args.quick else (args.rounds, args.ops)
    with RedisServer(name="bench-wire") as server:
        bench_sync(server.port, rounds, ops)
        factory = uvloop.new_event_loop if args.loop == "uvloop" else None
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(bench_async(server.port, rounds, ops))


if __name__ == "__main__":
    main()
