"""The near cache (issue 11): hit cost, thread scaling, invalidation latency, chaos.

One run, one private ``redis-server`` (never port 6379), client and server pinned to one CPU:

* hit cost: ``CacheService(near_cache=True).get`` of a small dict (a fresh copy) and of a
  str, against raw redis-py ``GET`` + ``orjson.loads`` on the same server (target <= 0.05x;
  a str <= 1.5 µs); asyncio: ``AsyncCacheService`` against raw ``redis.asyncio`` and cashews'
  ``client_side`` cache (redis-py's own ``cache_config`` needs Redis >= 7.4, and this
  machine's redis-server is older: skipped when so, said in the output);
* threads: aggregate near-hit throughput with 4 and 16 threads against one (target >= 0.9x);
* invalidation latency: a writer process sets a new version every 5 ms, a reader process
  reads the key in a loop through its near cache (a steady read load: mostly near hits);
  per version, the time from the writer's acknowledged SET to the reader's first read of it
  (the entry is gone by then and one fill has run: an upper bound of the invalidation's
  own latency). Twice: the writer with its own state directory (as on another host: only
  Redis' push tells the reader), and on the same host (the host page does). Target p99 <= 5 ms;
* the chaos run of ``tests/near_chaos.py`` (cut, hang, kill of Redis under the same two
  processes): reads of a version older than one acknowledged >= 10 ms before (target 0).

Run: ``.venv/bin/python -m benchmarks.bench_near [--quick]``; writes
benchmarks/results/near.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio
from tests.near_chaos import chaos_run
from tests.servers import RedisServer
from tests.workers import Worker

from cache_service import AsyncCacheService, CacheService

from .bench_core import SMALL, TEXT, Comparison, Variant, pin, ratio, render, run_batched

RESULTS = Path(__file__).resolve().parent / "results"


def wait_coherent(svc: Any) -> None:
    near = svc._target.near
    deadline = time.monotonic() + 10
    while time.monotonic() >= near.valid_until:
        svc._target.tracker.ensure_running()
        assert time.monotonic() < deadline, "the near cache never became coherent"
        time.sleep(0.01)


def hit_comparisons(server: RedisServer) -> tuple[list[Comparison], CacheService]:
    raw = redis.Redis(*server.address)
    svc = CacheService("bench-near", url=server.url, near_cache=True)
    wait_coherent(svc)
    svc.set("small", SMALL)
    svc.set("text", TEXT)
    raw.set("raw:small", orjson.dumps(SMALL))
    raw.set("raw:text", TEXT.encode())
    entries = svc._target.near.entries  # type: ignore[union-attr]
    while svc.full_key("small") not in entries or svc.full_key("text") not in entries:
        svc.get("small")
        svc.get("text")
        time.sleep(0.01)
    get = svc.get
    return [
        Comparison("near hit, small dict (fresh copy)", [
            Variant("raw GET + orjson.loads", lambda: orjson.loads(raw.get("raw:small"))),
            Variant("CacheService.get, near_cache=True", lambda: get("small")),
        ], per_call=False),
        Comparison("near hit, str", [
            Variant("raw GET + decode", lambda: raw.get("raw:text").decode()),  # type: ignore[union-attr]
            Variant("CacheService.get, near_cache=True", lambda: get("text")),
        ], per_call=False),
    ], svc


def async_hits(server: RedisServer, rounds: int, batch: int) -> list[str]:
    """Per-call µs of async near hits against raw redis.asyncio and cashews client_side."""
    lines = ["asyncio, small dict (median µs per call over rounds of batched calls):"]

    async def main() -> None:
        host, port = server.address
        raw = redis.asyncio.Redis(host=host, port=port)
        await raw.set("raw:asmall", orjson.dumps(SMALL))
        svc = AsyncCacheService("bench-anear", url=server.url, near_cache=True)
        await svc.set("small", SMALL)
        while svc.full_key("small") not in svc._target.near.entries:  # type: ignore[union-attr]
            await svc.get("small")
            await asyncio.sleep(0.01)
        contenders: list[tuple[str, Callable[[], Any]]] = [
            ("raw redis.asyncio GET + orjson.loads",
             lambda: _loads_after(raw.get("raw:asmall"))),
            ("AsyncCacheService.get, near_cache=True", lambda: svc.get("small")),
        ]
        cashews_note = ""
        try:
            from cashews import Cache
            cache = Cache()
            cache.setup(f"{server.url}", client_side=True)
            await cache.init()
            await cache.set("bench:small", SMALL)
            await cache.get("bench:small")
            await asyncio.sleep(0.05)
            contenders.append(("cashews client_side get (no copy)",
                               lambda: cache.get("bench:small")))
        except Exception as exc:  # not installed (pip install .[bench]) or failing
            cashews_note = f"  cashews client_side: not measured ({exc!r:.80})"
        results: dict[str, list[float]] = {name: [] for name, _ in contenders}
        for r in range(rounds):
            order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
            for name, call in order:
                started = time.perf_counter()
                for _ in range(batch):
                    await call()
                results[name].append((time.perf_counter() - started) / batch * 1e6)
        base = results[contenders[0][0]]
        for name, values in results.items():
            rel = statistics.median(a / b for a, b in zip(values, base, strict=True))
            lines.append(f"  {name:<44} {statistics.median(values):10.2f}   {rel:.3f}x")
        if cashews_note:
            lines.append(cashews_note)
        await raw.aclose()
        await svc.aclose()

    asyncio.run(main())
    return lines


async def _loads_after(pending: Any) -> Any:
    return orjson.loads(await pending)


def redis_py_cache_note(server: RedisServer) -> str:
    version = redis.Redis(*server.address).info("server")["redis_version"]
    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) >= (7, 4):
        return f"redis-py cache_config: Redis {version} could run it (not yet measured here)"
    return (f"redis-py cache_config: not measured (needs Redis >= 7.4; this redis-server is "
            f"{version})")


def thread_scaling(svc: CacheService, seconds: float) -> list[str]:
    """Aggregate near hits per second with 1, 4 and 16 threads."""
    get = svc.get
    lines = ["threads, near hits of a small dict (aggregate per second):"]
    base = 0.0
    for threads in (1, 4, 16):
        counts = [0] * threads
        stop = threading.Event()

        def work(i: int, stop: threading.Event = stop, counts: list[int] = counts) -> None:
            n = 0
            while not stop.is_set():
                for _ in range(100):
                    get("small")
                n += 100
            counts[i] = n

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        time.sleep(seconds)  # may return late: the GIL is busy; the clock below tells
        stop.set()
        for w in workers:
            w.join()
        rate = sum(counts) / (time.perf_counter() - started)
        base = base or rate
        lines.append(f"  {threads:>2} thread(s): {rate:12,.0f}/s   {rate / base:.2f}x one thread")
    return lines


def invalidation_latency(server: RedisServer, seconds: float, other_host: bool) -> list[str]:
    """Writer ack -> reader's first read of the new version, per version, in ms. With
    ``other_host`` the writer has its own state directory, as a process on another host
    would: only Redis' push tells the reader (else the host page does, at once)."""
    options: dict[str, Any] = {"socket_timeout": 1.0, "connect_timeout": 1.0}
    elsewhere = {"state_dir": tempfile.mkdtemp(prefix="bench-near-other-")} if other_host else {}
    with Worker(server.url, "bench-inval", near_cache=True, **options) as reader, \
            Worker(server.url, "bench-inval", **options, **elsewhere) as writer:
        writer.call("set", "v", 0)
        deadline = time.monotonic() + 10
        while not (reader.call("get", "v") == 0
                   and reader.call("stats")["target"].get("near_coherent")):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        reader.send("hammer_runs", "v", seconds + 0.5)
        time.sleep(0.2)
        acks = writer.call("write_paced", "v", seconds, 0.005, timeout=seconds + 30)
        runs = reader.receive("hammer_runs", timeout=seconds + 30)
        hits = reader.call("stats")["target"]["near_hits"]
        reader.exit()
        writer.exit()
    first_seen: dict[int, float] = {}
    for value, first, _last, _reads in runs:
        if isinstance(value, int) and value not in first_seen:
            first_seen[value] = first
    delays = sorted((first_seen[v] - t) * 1000 for v, t in acks if v in first_seen)
    never = sum(1 for v, _ in acks if v not in first_seen)
    reads = sum(r[3] for r in runs)
    p50 = statistics.median(delays)
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    where = ("a writer on another host (its own state dir: Redis' push only)" if other_host
             else "a writer on the same host (the host page, then the push)")
    return [
        f"invalidation seen by another process, {where}: writer's ack -> reader's first read "
        "of the new version (negative: the read began before the writer took its ack time):",
        f"  {len(acks)} versions, {reads:,} reads ({hits:,} near hits): p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms, max {delays[-1]:.2f} ms"
        + (f", {never} versions overwritten before any read saw them" if never else ""),
        f"  {'PASS' if p99 <= 5.0 else 'FAIL'}  invalidation p99 {p99:.2f} ms (target <= 5 ms)",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args(argv)
    rounds, batches, batch = (3, 5, 200) if args.quick else (7, 15, 500)
    state = tempfile.mkdtemp(prefix="bench-near-")  # the host state of this run only
    atexit.register(shutil.rmtree, state, True)
    os.environ.setdefault("CACHE_SERVICE_DIR", state)
    with RedisServer(name="bench-near") as server:
        placement = pin(server)
        comparisons, svc = hit_comparisons(server)
        for cmp in comparisons:
            run_batched(cmp, rounds, batches, batch)
        header = [f"near cache benchmark, {platform.python_version()} on {platform.machine()}, "
                  f"{placement}", redis_py_cache_note(server)]
        out = [render(comparisons, header)]
        dict_ratio = ratio(comparisons[0].variants[1], comparisons[0].variants[0])
        str_us = statistics.median(comparisons[1].variants[1].samples)
        out.append("targets:")
        out.append(f"  {'PASS' if dict_ratio <= 0.05 else 'FAIL'}  near hit small dict: "
                   f"{dict_ratio:.3f}x raw GET + orjson.loads (target <= 0.05x)")
        out.append(f"  {'PASS' if str_us <= 1.5 else 'FAIL'}  near hit str: {str_us:.2f} µs "
                   f"(target <= 1.5 µs)")
        out.append("")
        out.extend(async_hits(server, rounds, batch))
        out.append("")
        out.extend(thread_scaling(svc, 0.5 if args.quick else 1.5))
        out.append("")
        os.sched_setaffinity(0, os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)))
        for other_host in (True, False):
            out.extend(invalidation_latency(server, 3.0 if args.quick else 10.0, other_host))
        out.append("")
        figures = chaos_run(server)
        out.append("chaos run (two processes; Redis cut, hung, killed and restarted empty):")
        out.append(f"  {figures.summary()}")
        out.append(f"  {'PASS' if figures.stale_reads == 0 else 'FAIL'}  stale reads: "
                   f"{figures.stale_reads} (target 0)")
        svc.close()
    text = "\n".join(out) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "near.txt").write_text(text)


if __name__ == "__main__":
    main()
