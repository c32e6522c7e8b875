"""Async GET-hit cost: AsyncCacheService vs raw redis.asyncio, cashews and aiocache, same run.

Run from the repository root (it starts its own redis-server on a free port, never 6379)::

    .venv/bin/python benchmarks/bench_async.py [--rounds 7] [--ops 2000]

Every library reads the same small JSON document (a typical API response) that it wrote
itself. "raw" is ``redis.asyncio`` GET + ``orjson.loads``: the floor any cache layer adds to.
Many short rounds run the libraries in a shuffled order; a library's ratio is the median over
rounds of (its time / raw's time in the same round), so load from other processes on the
machine hits both sides of each ratio alike. "sequential": one task awaiting GETs back to back;
"100 tasks": 100 concurrent tasks sharing each library's client, awaiting GETs back to back.
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
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import RedisServer

from cache_service import AsyncCacheService
from cache_service._redis.backend import build_async_client

VALUE = {"id": 123, "name": "John Doe", "email": "john@example.com", "roles": ["admin", "dev"],
         "active": True, "score": 97.5, "tags": {"team": "core", "tz": "UTC"}}
Getter = Callable[[], Awaitable[Any]]


Closer = Callable[[], Awaitable[Any]]


async def setup(url: str, port: int) -> tuple[dict[str, Getter], list[Closer]]:
    """One getter per library, each reading a value it stored itself; and the closers."""
    getters: dict[str, Getter] = {}
    closers: list[Closer] = []

    raw = redis.asyncio.Redis(host="127.0.0.1", port=port)
    await raw.set("bench:raw", orjson.dumps(VALUE))
    closers.append(raw.aclose)

    async def raw_get() -> Any:
        return orjson.loads(await raw.get("bench:raw"))  # type: ignore[arg-type]

    getters["raw redis.asyncio"] = raw_get

    ours = AsyncCacheService("bench", url=url)
    # The same redis.asyncio client, built with cache_service's fail-fast settings (no retries,
    # 0.25 s timeouts): what those settings cost inside redis-py, apart from our layer.
    tuned = build_async_client(ours._location, ours._target.options)
    await tuned.set("bench:tuned", orjson.dumps(VALUE))
    closers.append(tuned.aclose)

    async def tuned_get() -> Any:
        return orjson.loads(await tuned.get("bench:tuned"))

    getters["redis.asyncio, our settings"] = tuned_get
    await ours.set("k", VALUE, ttl=600)
    assert await ours.get("k") == VALUE
    closers.append(ours.aclose)
    getters["cache_service"] = lambda: ours.get("k")

    async def loader() -> Any:  # a hit never calls it; a failed GET (an outage) does
        LOADS.append(1)
        return VALUE

    getters["cache_service get_or_set"] = lambda: ours.get_or_set("k", loader)

    # our own connection layer (issue 18), on db 1: a target of its own
    wired = AsyncCacheService("bench", url=f"redis://127.0.0.1:{port}/1", connection="wire")
    await wired.set("k", VALUE, ttl=600)
    assert await wired.get("k") == VALUE
    closers.append(wired.aclose)
    getters["cache_service, wire"] = lambda: wired.get("k")

    from cashews import Cache

    cashews = Cache()
    cashews.setup(f"{url}?max_connections=200", suppress=False)
    await cashews.set("bench:cashews", VALUE, expire=600)
    assert await cashews.get("bench:cashews") == VALUE
    closers.append(cashews.close)
    getters["cashews"] = lambda: cashews.get("bench:cashews")

    from aiocache import RedisCache  # type: ignore[import-untyped]

    aio = RedisCache(endpoint="127.0.0.1", port=port, namespace="bench")
    await aio.set("aiocache", VALUE, ttl=600)
    assert await aio.get("aiocache") == VALUE
    closers.append(aio.close)
    getters["aiocache"] = lambda: aio.get("aiocache")
    return getters, closers


LOADS: list[int] = []  # get_or_set's loader calls: GETs that did not hit


async def sequential(get: Getter, ops: int) -> float:
    """Seconds per GET, one task."""
    start = time.perf_counter()
    for _ in range(ops):
        await get()
    return (time.perf_counter() - start) / ops


async def concurrent(get: Getter, ops: int, tasks: int = 100) -> float:
    """Seconds per GET (wall time / GETs), ``tasks`` tasks at once."""
    per_task = max(1, ops // tasks)

    async def worker() -> None:
        for _ in range(per_task):
            await get()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return (time.perf_counter() - start) / (per_task * tasks)


async def main(rounds: int, ops: int) -> None:
    with RedisServer(name="bench-async") as server:
        getters, closers = await setup(server.url, server.address[1])
        modes: dict[str, Callable[[Getter, int], Awaitable[float]]] = {
            "sequential": sequential,
            "10 tasks": partial(concurrent, tasks=10),
            "100 tasks": concurrent,
        }
        results: dict[str, dict[str, list[float]]] = {mode: {} for mode in modes}
        for get in getters.values():  # warm up: connections, code paths
            await sequential(get, 300)
            await concurrent(get, 1000)
        order = list(getters)
        for _ in range(rounds):
            for mode, bench in modes.items():
                random.shuffle(order)
                for name in order:
                    gc.collect()
                    results[mode].setdefault(name, []).append(await bench(getters[name], ops))
        for close in closers:
            await close()
    if LOADS:
        print(f"\nget_or_set loaded {len(LOADS)} times: its GETs failed (an outage)")
    for mode, table in results.items():
        raw = table["raw redis.asyncio"]
        print(f"\nasync GET hit, {mode} ({rounds} rounds x {ops} GETs)")
        print(f"  {'library':<28}{'us/GET':>10}{'vs raw':>10}")
        for name in getters:
            ratio = statistics.median(t / r for t, r in zip(table[name], raw, strict=True))
            print(f"  {name:<28}{statistics.median(table[name]) * 1e6:>10.1f}{ratio:>9.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--ops", type=int, default=400)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.ops))
