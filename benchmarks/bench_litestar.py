"""Litestar stores: CacheServiceStore vs Litestar's own RedisStore (issue 20).

**Up.** ``await store.get(key)`` hits and ``await store.set(key, value, expires_in=60)`` of a
1 KB bytes value (a small cached response) on one private redis-server, against a raw
``redis.asyncio`` GET/SET of the same bytes. Variants run interleaved in rounds on one event
loop, one call timed at a time; a ratio is the median over rounds of (variant median / raw
median). CacheServiceStore runs with the default codec and with ``serializer="msgpack"``;
``AsyncCacheService`` get/set of the same value shows what the store adds to the service.

**Down.** p50/p99 of ``get`` with Redis refused (a port nobody listens on): CacheServiceStore
serves from its memory fallback; RedisStore raises (the time to raise is what a request
waits before Litestar answers 500).

Run: ``.venv/bin/python -m benchmarks.bench_litestar [--quick] [--no-write]``; writes
benchmarks/results/litestar.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

VALUE = os.urandom(512).hex().encode()  # 1 KB
Call = Callable[[], Awaitable[Any]]


async def _time_calls(fn: Call, n: int) -> list[float]:
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        t0 = clock()
        await fn()
        out.append((clock() - t0) / 1000)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _compare(variants: dict[str, Call], rounds: int,
                   calls: int) -> list[tuple[str, float, float, float]]:
    names = list(variants)
    samples: dict[str, list[float]] = {n: [] for n in names}
    medians: dict[str, list[float]] = {n: [] for n in names}
    for fn in variants.values():
        await _time_calls(fn, 200)  # warm-up
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = await _time_calls(variants[name], calls)
            samples[name].extend(t)
            medians[name].append(statistics.median(t))
    base = medians[names[0]]
    return [(name, statistics.median(samples[name]), _pct(samples[name], 0.99),
             statistics.median(m / b for m, b in zip(medians[name], base, strict=True)))
            for name in names]


async def _up(url: str, rounds: int, calls: int) -> list[str]:
    import redis.asyncio as aredis
    from litestar.stores.redis import RedisStore

    from cache_service.integrations.litestar import CacheServiceStore

    raw = aredis.Redis.from_url(url)
    theirs = RedisStore.with_client(url, namespace="bench")
    ours = CacheServiceStore.with_url(url, prefix="bench-ls", fallback="process")
    packed = CacheServiceStore.with_url(url, prefix="bench-ls-mp", fallback="process",
                                        serializer="msgpack")
    stores = {"CacheServiceStore (default codec)": ours,
              "CacheServiceStore (msgpack)": packed, "Litestar RedisStore": theirs}
    await raw.set("raw", VALUE)
    for store in stores.values():
        await store.set("k", VALUE)
        assert await store.get("k") == VALUE
    gets: dict[str, Call] = {"raw redis.asyncio GET": lambda: raw.get("raw")}
    sets: dict[str, Call] = {"raw redis.asyncio SET EX": lambda: raw.set("raw", VALUE, ex=60)}
    text = VALUE.decode("latin-1")  # what the store hands the service
    gets["AsyncCacheService.get (same value)"] = lambda: ours.service.get(":k")
    sets["AsyncCacheService.set (same value)"] = lambda: ours.service.set(":k", text, 60)
    for name, store in stores.items():
        gets[name] = lambda s=store: s.get("k")
        sets[name] = lambda s=store: s.set("k", VALUE, expires_in=60)
    out = []
    for title, variants in (("get hit", gets), ("set", sets)):
        rows = await _compare(variants, rounds, calls)
        out += ["", f"Litestar store {title}, 1 KB bytes",
                f"  {'variant':<36}{'median µs':>11}{'p99 µs':>10}{'ratio':>9}"]
        out += [f"  {n:<36}{m:>11.2f}{p:>10.1f}{r:>8.3f}x" for n, m, p, r in rows]
    await raw.aclose()
    await theirs.__aexit__(None, None, None)  # closes the client with_client made
    await ours.service.aclose()
    await packed.service.aclose()
    return out


async def _down(url: str, n_ours: int, n_theirs: int) -> list[str]:
    from litestar.stores.redis import RedisStore

    from cache_service.integrations.litestar import CacheServiceStore

    ours = CacheServiceStore.with_url(url, prefix="bench-ls-down", fallback="process")
    await ours.get("warm-up")  # the first failure opens the breaker
    t = await _time_calls(lambda: ours.get("k"), n_ours)
    rows = [("CacheServiceStore", _pct(t, 0.5), _pct(t, 0.99), n_ours,
             "miss from the memory fallback")]
    theirs = RedisStore.with_client(url, namespace="bench")

    async def raising() -> None:
        with contextlib.suppress(Exception):  # it raises: Litestar answers 500
            await theirs.get("k")

    t = await _time_calls(raising, n_theirs)
    rows.append(("Litestar RedisStore", _pct(t, 0.5), _pct(t, 0.99), n_theirs, "raises"))
    await ours.service.aclose()
    return ["", "Litestar store get with Redis refused (per call)",
            f"  {'store':<24}{'p50 ms':>10}{'p99 ms':>10}{'calls':>7}  outcome",
            *(f"  {n:<24}{p50 / 1000:>10.3f}{p99 / 1000:>10.3f}{c:>7}  {o}"
              for n, p50, p99, c, o in rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rounds, calls = (4, 200) if args.quick else (30, 500)
    from tests.servers import RedisServer

    out = [f"bench_litestar ({'quick' if args.quick else 'full'}) - Python "
           f"{platform.python_version()}, {os.cpu_count()} CPUs, not pinned"]
    with RedisServer(name="bench-litestar") as server:
        out += asyncio.run(_up(server.url, rounds, calls))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
        out += asyncio.run(_down(refused, 500 if args.quick else 5000, 5 if args.quick else 20))
    text = "\n".join(out) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "litestar.txt").write_text(text)


if __name__ == "__main__":
    main()
