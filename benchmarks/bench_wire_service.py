"""Issue 18's targets: the services on our own connection layer (``connection="wire"``) against
raw redis-py / redis.asyncio, Valkey GLIDE, cashews and aiocache, every ratio from one run.

Run from the repository root (it starts its own redis-server on a free port, never 6379)::

    .venv/bin/python -m benchmarks.bench_wire_service [--quick] [--no-write]

- sync (client and redis-server pinned to one CPU, as ``bench_core``): a get hit and a set of
  a small dict against raw ``GET``/``SET PX`` + orjson; ``get_many(100)`` against a raw
  ``MGET`` of 100 decoded into a dict; ``set_many(100)`` against a raw pipeline of 100
  ``SET PX``; ``incr`` against a raw ``INCRBY``. Every call timed; a ratio is the median over
  rounds of (variant median / baseline median), the variants taking turns by round.
- async (unpinned: the server gets a CPU of its own): a get hit with 1, 10, 100 and 1,000
  tasks sharing each library's client, every library reading (and decoding) a value it
  stored itself; ratios of time per GET to raw ``redis.asyncio`` (pool of up to 2,000
  connections) in the same round, shuffled order.
- server CPU: redis-server's own ``used_cpu_sys + used_cpu_user`` (``INFO cpu``), the delta
  over each library's GETs at 100 tasks, per 100,000 GETs.

Writes ``results/wire_service.txt`` (unless ``--quick`` or ``--no-write``). Each target prints
as ``OK``/``MISSED`` with its figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import RedisServer

from benchmarks.bench_async import VALUE, concurrent, sequential
from benchmarks.bench_core import SMALL, TTL, Comparison, Variant, pin, ratio, render, run_per_call
from cache_service import AsyncCacheService, CacheService

RESULTS = Path(__file__).resolve().parent / "results" / "wire_service.txt"
BATCH = 100
TASKS = (1, 10, 100, 1000)
Getter = Callable[[], Awaitable[Any]]
Closer = Callable[[], Awaitable[Any]]


# -- sync -------------------------------------------------------------------------------------

def sync_comparisons(server: RedisServer) -> tuple[list[Comparison], Callable[[], None]]:
    """Raw redis-py vs the service on our layer (and on redis-py, for reference)."""
    url = f"redis://{server.host}:{server.port}"
    raw = redis.Redis(host=server.host, port=server.port, db=0)
    wire = CacheService("bw", url=f"{url}/1", default_ttl=TTL, connection="wire")
    svc = CacheService("bw", url=f"{url}/2", default_ttl=TTL, connection="redis-py")
    loads, dumps = orjson.loads, orjson.dumps
    px = TTL * 1000
    names = [f"m{i}" for i in range(BATCH)]
    raw_keys = [f"raw:{n}" for n in names]
    mapping = {n: {**SMALL, "id": i} for i, n in enumerate(names)}
    raw_items = [(k, dumps(v)) for k, v in zip(raw_keys, mapping.values(), strict=True)]
    raw.set("raw:small", dumps(SMALL), px=px)
    raw.mset(dict(raw_items))
    for service in (wire, svc):
        service.set("small", SMALL)
        service.set_many(mapping)
        assert service.get("small") == SMALL
        assert service.get_many(names) == mapping
    raw_get, raw_set, raw_mget, raw_incrby = raw.get, raw.set, raw.mget, raw.incrby

    def raw_get_many() -> dict[str, object]:
        return {n: loads(v) for n, v in zip(names, raw_mget(raw_keys), strict=True)
                if v is not None}

    def raw_set_many() -> None:
        pipe = raw.pipeline(transaction=False)
        for k, payload in raw_items:
            pipe.set(k, payload, px=px)
        pipe.execute()

    assert raw_get_many() == mapping

    def trio(base: Variant, wire_call: Callable[[], object],
             svc_call: Callable[[], object]) -> list[Variant]:
        return [base, Variant("CacheService, connection='wire'", wire_call),
                Variant("CacheService (redis-py)", svc_call)]

    small = len(dumps(SMALL))
    comparisons = [
        Comparison(f"sync get hit, small dict ({small} B JSON)", trio(
            Variant("raw redis-py GET + orjson.loads",
                    lambda: loads(raw_get("raw:small"))),  # type: ignore[arg-type]
            lambda: wire.get("small"), lambda: svc.get("small")), True),
        Comparison("sync set, small dict", trio(
            Variant("raw redis-py SET PX + orjson.dumps",
                    lambda: raw_set("raw:small", dumps(SMALL), px=px)),
            lambda: wire.set("small", SMALL), lambda: svc.set("small", SMALL)), True),
        Comparison(f"sync get_many({BATCH}) hits", trio(
            Variant(f"raw MGET of {BATCH} + orjson.loads into a dict", raw_get_many),
            lambda: wire.get_many(names), lambda: svc.get_many(names)), True),
        Comparison(f"sync set_many({BATCH})", trio(
            Variant(f"raw pipeline of {BATCH} SET PX (payloads made once)", raw_set_many),
            lambda: wire.set_many(mapping), lambda: svc.set_many(mapping)), True),
        Comparison("sync incr", trio(
            Variant("raw redis-py INCRBY", lambda: raw_incrby("raw:n", 1)),
            lambda: wire.incr("n"), lambda: svc.incr("n")), True),
    ]

    def close() -> None:
        raw.close()
        wire.close()
        svc.close()

    return comparisons, close


def unpin(server: RedisServer) -> None:
    """Give this process and redis-server every CPU again (async: the server needs its own)."""
    if hasattr(os, "sched_setaffinity"):
        every = set(range(os.cpu_count() or 1))
        os.sched_setaffinity(0, every)
        if server.pid is not None:
            os.sched_setaffinity(server.pid, every)


# -- async ------------------------------------------------------------------------------------

async def async_getters(server: RedisServer) -> tuple[dict[str, Getter], list[Closer]]:
    """One getter per library, each reading and decoding a value it stored itself."""
    host, port = server.host, server.port
    getters: dict[str, Getter] = {}
    closers: list[Closer] = []
    loads = orjson.loads

    raw = redis.asyncio.Redis(host=host, port=port, max_connections=2000)
    await raw.set("bw:raw", orjson.dumps(VALUE))
    closers.append(raw.aclose)

    async def raw_get() -> Any:
        return loads(await raw.get("bw:raw"))  # type: ignore[arg-type]

    getters["raw redis.asyncio"] = raw_get

    wire = AsyncCacheService("bw", url=f"redis://{host}:{port}/1", connection="wire")
    await wire.set("k", VALUE, ttl=600)
    closers.append(wire.aclose)
    getters["cache_service, wire"] = lambda: wire.get("k")

    # No row for the service on redis-py: at 1,000 tasks its pool's thousand connects pass the
    # 0.25 s connect deadline, the breaker opens and its gets are served from the fallback
    # store, which would be timed as if they were Redis reads (bench_async has its rows).

    from glide import GlideClient, GlideClientConfiguration, NodeAddress

    glide = await GlideClient.create(GlideClientConfiguration(
        [NodeAddress(host, port)], request_timeout=5000))
    await glide.set("bw:glide", orjson.dumps(VALUE))
    closers.append(glide.close)

    async def glide_get() -> Any:
        return loads(await glide.get("bw:glide"))  # type: ignore[arg-type]

    getters["Valkey GLIDE"] = glide_get

    from cashews import Cache

    cashews = Cache()
    cashews.setup(f"redis://{host}:{port}/3?max_connections=2000", suppress=False)
    await cashews.set("bw:cashews", VALUE, expire=600)
    closers.append(cashews.close)
    getters["cashews"] = lambda: cashews.get("bw:cashews")

    from aiocache import RedisCache  # type: ignore[import-untyped]

    aio = RedisCache(endpoint=host, port=port, db=4, namespace="bw")
    await aio.set("aiocache", VALUE, ttl=600)
    closers.append(aio.close)
    getters["aiocache"] = lambda: aio.get("aiocache")
    for name, get in getters.items():
        assert await get() == VALUE, name
    return getters, closers


Table = dict[str, list[float]]


async def run_async(server: RedisServer, rounds: int, ops: int, cpu_gets: int
                    ) -> tuple[dict[int, Table], dict[int, Table], dict[str, str],
                               dict[str, float]]:
    """Wall seconds and the client's CPU seconds per GET by task count and library;
    libraries that failed (and why); server CPU seconds per 100,000 GETs at 100 tasks."""
    getters, closers = await async_getters(server)
    failed: dict[str, str] = {}
    broken: set[tuple[str, int]] = set()
    tables: dict[int, Table] = {tasks: {} for tasks in TASKS}
    spent: dict[int, Table] = {tasks: {} for tasks in TASKS}
    info = redis.Redis(host=server.host, port=server.port)

    async def timed(name: str, tasks: int, count: int) -> float | None:
        """Wall seconds per GET (None once the library failed at this task count); the
        process' CPU seconds per GET (every thread: GLIDE's Rust core too) go to ``spent``."""
        if (name, tasks) in broken:
            return None
        try:
            cpu_start = time.process_time()
            if tasks == 1:
                seconds = await sequential(getters[name], count)
            else:
                seconds = await concurrent(getters[name], count, tasks)
            gets = count if tasks == 1 else max(1, count // tasks) * tasks
            spent[tasks].setdefault(name, []).append((time.process_time() - cpu_start) / gets)
            return seconds
        except Exception as exc:  # a library that breaks under this load: say so, go on
            broken.add((name, tasks))
            failed[f"{name}, {tasks} tasks"] = f"{type(exc).__name__}: {exc}"[:160]
            return None

    for tasks in TASKS:  # warm up: connections (a pool opens one per concurrent task), paths
        for name in getters:
            await timed(name, tasks, max(ops, tasks * 2))
    for table in spent.values():  # the warm-up's CPU is not a round's
        table.clear()
    names = list(getters)
    for _ in range(rounds):
        for tasks in TASKS:
            random.shuffle(names)
            for name in names:
                gc.collect()
                seconds = await timed(name, tasks, max(ops, tasks * 5))
                if seconds is not None:
                    tables[tasks].setdefault(name, []).append(seconds)
    cpu: dict[str, float] = {}
    for name in getters:  # server CPU per GET, one library at a time
        if (name, 100) in broken:
            continue
        before = _server_cpu(info)
        await concurrent(getters[name], cpu_gets, 100)
        cpu[name] = (_server_cpu(info) - before) / cpu_gets * 100_000
    info.close()
    for close in closers:
        await close()
    for (name, tasks) in broken:  # a library that failed late lost its round alignment
        tables[tasks].pop(name, None)
        spent[tasks].pop(name, None)
    return tables, spent, failed, cpu


def _server_cpu(client: redis.Redis) -> float:
    stats = client.info("cpu")
    return float(stats["used_cpu_sys"]) + float(stats["used_cpu_user"])


def _median_ratio(runs: list[float], base: list[float]) -> float:
    return statistics.median(t / b for t, b in zip(runs, base, strict=True))


def render_async(tables: dict[int, Table], spent: dict[int, Table], failed: dict[str, str],
                 cpu: dict[str, float], rounds: int) -> tuple[list[str], dict[str, float]]:
    """The async tables, and the figures the targets read."""
    lines: list[str] = []
    figures: dict[str, float] = {}
    for tasks, table in tables.items():
        raw = table["raw redis.asyncio"]
        label = "sequential (1 task)" if tasks == 1 else f"{tasks} tasks"
        lines += [f"async get hit, {label}, {rounds} rounds",
                  f"  {'library':<30}{'µs/GET':>10}{'vs raw':>9}{'throughput':>12}"
                  f"{'client CPU µs/GET':>19}"]
        for name, runs in table.items():
            r = _median_ratio(runs, raw)
            lines.append(f"  {name:<30}{statistics.median(runs) * 1e6:>10.1f}{r:>8.2f}x"
                         f"{1 / r:>11.1f}x{statistics.median(spent[tasks][name]) * 1e6:>19.1f}")
            figures[f"{tasks}:{name}"] = r
        if "Valkey GLIDE" in table:
            vs = _median_ratio(table["Valkey GLIDE"], table["cache_service, wire"])
            figures[f"{tasks}:wire vs GLIDE"] = vs
            used = spent[tasks]
            by_cpu = _median_ratio(used["Valkey GLIDE"], used["cache_service, wire"])
            lines.append(f"  cache_service, wire: {vs:.1f}x the throughput of Valkey GLIDE; "
                         f"GLIDE's client CPU per GET is {by_cpu:.1f}x ours")
        lines.append("")
    lines += ["redis-server CPU (INFO cpu: used_cpu_sys + used_cpu_user) per 100,000 GETs, "
              "100 tasks",
              f"  {'library':<30}{'CPU s':>10}{'vs raw':>9}"]
    for name, seconds in cpu.items():
        r = seconds / cpu["raw redis.asyncio"]
        figures[f"cpu:{name}"] = r
        lines.append(f"  {name:<30}{seconds:>10.3f}{r:>8.2f}x")
    for name, why in failed.items():
        lines.append(f"  left out: {name}: {why}")
    lines.append("")
    return lines, figures


# -- targets ----------------------------------------------------------------------------------

def target_lines(comparisons: list[Comparison], figures: dict[str, float]) -> list[str]:
    """Issue 18's targets, each with its figure and OK/MISSED."""
    sync = {cmp.title.split(" (")[0].split(",")[0]: ratio(cmp.variants[1], cmp.variants[0])
            for cmp in comparisons}
    rows: list[tuple[str, float | None, str, bool]] = []

    def at_most(label: str, value: float | None, limit: float) -> None:
        rows.append((label, value, f"<= {limit:.2f}x", value is not None and value <= limit))

    def at_least(label: str, value: float | None, limit: float, unit: str) -> None:
        rows.append((label, value, f">= {limit:.0f}x {unit}",
                     value is not None and value >= limit))

    at_most("sync get hit vs raw redis-py GET + orjson", sync.get("sync get hit"), 0.75)
    at_most("sync set vs raw redis-py SET PX + orjson", sync.get("sync set"), 0.85)
    at_most("async get hit, 1 task, vs raw redis.asyncio", figures.get("1:cache_service, wire"),
            0.60)
    hundred = figures.get("100:cache_service, wire")
    at_least("async get hit, 100 tasks: throughput vs raw redis.asyncio",
             None if hundred is None else 1 / hundred, 5, "raw")
    at_least("async get hit, 100 tasks: throughput vs Valkey GLIDE",
             figures.get("100:wire vs GLIDE"), 2, "GLIDE")
    at_most(f"get_many({BATCH}) vs raw MGET + decode", sync.get(f"sync get_many({BATCH}) hits"),
            0.80)
    at_most("redis-server CPU per GET at 100 tasks vs raw redis.asyncio",
            figures.get("cpu:cache_service, wire"), 0.50)
    lines = ["targets (issue 18; connection='wire'):"]
    for label, value, target, ok in rows:
        shown = "n/a" if value is None else f"{value:.2f}x"
        lines.append(f"  {'OK    ' if ok else 'MISSED'}  {label}: {shown} (target {target})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; writes nothing")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    rounds, calls, async_rounds, ops, cpu_gets = (
        (4, 300, 3, 2000, 20_000) if args.quick else (20, 750, 15, 5000, 100_000))
    started = time.monotonic()
    with RedisServer(name="bench-wire-service") as server:
        placement = pin(server)
        version = server.client().info("server")["redis_version"]
        comparisons, close = sync_comparisons(server)
        for cmp in comparisons:
            run_per_call(cmp, rounds, calls if "many" not in cmp.title else calls // 3)
        close()
        unpin(server)
        tables, spent, failed, cpu = asyncio.run(run_async(server, async_rounds, ops, cpu_gets))
    async_lines, figures = render_async(tables, spent, failed, cpu, async_rounds)
    header = [
        "issue 18: the services on our own connection layer (benchmarks/bench_wire_service.py)",
        f"python {platform.python_version()}, redis-py {redis.__version__}, valkey-glide "
        f"{package_version('valkey-glide')}, cashews {package_version('cashews')}, aiocache "
        f"{package_version('aiocache')}, redis-server {version} on loopback, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
        f"sync: {placement}; {rounds} rounds x {calls} calls per variant (get_many/set_many: "
        f"{calls // 3}), every call timed; ratio = median over rounds of (variant / first row)",
        f"async: unpinned; {async_rounds} rounds of >= {ops} GETs per library and task count",
        f"wall time {time.monotonic() - started:.0f} s",
    ]
    text = "\n".join([render(comparisons, header), *async_lines,
                      *target_lines(comparisons, figures)]) + "\n"
    print(text)
    if not (args.quick or args.no_write):
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
