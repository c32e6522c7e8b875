"""The fallback path during an outage: per-process memory store vs the host-shared store.

Four worker processes (like ``uvicorn --workers 4``) use one service location whose Redis is
unreachable (a refused port), so every call is served by the fallback. Each worker reads
random keys of 1,000 as fast as it can for a few seconds, timing every ``get`` on its own;
with ``--writes`` one call in ten is a ``set`` instead. Reported per configuration: p50, p99
and p99.9 of a ``get`` over all workers, the aggregate get rate, and with writes the p50/p99
of a ``set`` (a durable journal row plus the fallback write, in one transaction).

* ``process``: ``fallback="process"`` - each worker's own in-memory store (fast, but workers
  serve different data during an outage);
* ``host``: ``fallback="host"`` (the default) - one SQLite (WAL) table shared by the workers.

Target (issue 8): the shared store's get p99 <= 50 µs with 4 workers hammering it.

Run: ``.venv/bin/python -m benchmarks.bench_fallback [--quick]``; writes
benchmarks/results/fallback.txt.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = 1000
VALUE = {"id": 12345, "name": "Alice Example", "email": "alice@example.com", "active": True}


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens here: connection refused


def _service(url: str, fallback: str, state_dir: str) -> Any:
    from cache_service import CacheService

    svc = CacheService("bench-fallback", url=url, fallback=fallback, state_dir=state_dir,
                       max_memory_entries=10_000, breaker_min_backoff=60,
                       breaker_max_backoff=60)
    svc.get("warm-up")  # the refused connect opens the breaker: from here on, the fallback
    assert not svc.is_redis_available()
    return svc


def _worker(run: dict[str, Any], start: Any, out: Any) -> None:
    url, fallback, state_dir = run["url"], run["fallback"], run["state_dir"]
    seconds, writes = run["seconds"], run["writes"]
    svc = _service(url, fallback, state_dir)
    for i in range(KEYS):  # each worker fills what it reads (shared: the same rows)
        svc.set(f"k{i}", VALUE, ttl=600)
    rng = random.Random(os.getpid())
    times: list[int] = []
    set_times: list[int] = []
    start.wait()
    end = time.perf_counter() + seconds
    clock = time.perf_counter_ns
    while time.perf_counter() < end:
        key = f"k{rng.randrange(KEYS)}"
        if writes and rng.random() < 0.1:
            t0 = clock()
            svc.set(key, VALUE, ttl=600)  # journaled (durable) + the fallback write
            set_times.append(clock() - t0)
            continue
        t0 = clock()
        value = svc.get(key)
        times.append(clock() - t0)
        assert value == VALUE, value
    out.put((times, set_times))


def measure(fallback: str, workers: int, seconds: float, writes: bool) -> dict[str, float]:
    """Run ``workers`` processes on one fallback kind; latency figures over all their gets."""
    ctx = multiprocessing.get_context("spawn")
    url = _dead_url()
    with tempfile.TemporaryDirectory(prefix="bench-fallback-") as state_dir:
        start = ctx.Event()
        out = ctx.Queue()
        run = {"url": url, "fallback": fallback, "state_dir": state_dir, "seconds": seconds,
               "writes": writes}
        procs = [ctx.Process(target=_worker, args=(run, start, out)) for _ in range(workers)]
        for p in procs:
            p.start()
        time.sleep(2.0)  # every worker has filled its keys
        start.set()
        samples: list[int] = []
        set_samples: list[int] = []
        for _ in procs:
            gets, sets = out.get(timeout=seconds + 120)
            samples.extend(gets)
            set_samples.extend(sets)
        for p in procs:
            p.join()
    samples.sort()
    set_samples.sort()

    def pct(values: list[int], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] / 1000 if values else 0.0

    return {"p50": pct(samples, 0.50), "p99": pct(samples, 0.99),
            "p999": pct(samples, 0.999), "rate": len(samples) / seconds, "n": len(samples),
            "mean": statistics.fmean(samples) / 1000, "set_p50": pct(set_samples, 0.5),
            "set_p99": pct(set_samples, 0.99)}


def main() -> None:
    """Measure both kinds, with and without writes; print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s per run")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 4.0
    lines = [
        "cache_service fallback benchmark (benchmarks/bench_fallback.py)",
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.workers} worker processes, Redis refused (breaker open), {KEYS} keys, "
        f"{seconds:g} s per run, every get timed",
        "Target: host-shared store get p99 <= 50 µs with 4 workers.",
        "",
        f"  {'fallback':<10} {'load':<18} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} "
        f"{'gets/s (all)':>13} {'set p50/p99 µs':>16}",
    ]
    print("\n".join(lines), flush=True)
    for writes in (False, True):
        for fallback in ("process", "host"):
            r = measure(fallback, args.workers, seconds, writes)
            load = "gets + 10% sets" if writes else "gets only"
            sets = f"{r['set_p50']:.0f} / {r['set_p99']:.0f}" if writes else "-"
            line = (f"  {fallback:<10} {load:<18} {r['p50']:>8.1f} {r['p99']:>8.1f} "
                    f"{r['p999']:>9.1f} {r['rate']:>13,.0f} {sets:>16}")
            print(line, flush=True)
            lines.append(line)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "fallback.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
