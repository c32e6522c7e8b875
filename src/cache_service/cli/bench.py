"""``bench``: the Benchmarks page's hit-path comparison, ours vs raw redis-py, on the user's Redis.

It writes only its own keys, under a fresh prefix ``cache-service-bench-<random>``, and
removes them at the end (also on failure or Ctrl-C).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable

import click
import orjson
import redis
from rich.console import Console
from rich.table import Table

from cache_service.cli._common import Connection, redis_url_option, timeout_option
from cache_service.keys import KeySpace

__all__ = ["bench"]

VALUE = {"id": 12345, "name": "Alice Example", "email": "alice@example.com", "active": True,
         "score": 4.75, "tags": ["admin", "beta"]}


def _per_call(fn: Callable[[], object], calls: int) -> float:
    """Median seconds per call over ``calls`` calls, each timed on its own."""
    times = []
    clock = time.perf_counter
    for _ in range(calls):
        started = clock()
        fn()
        times.append(clock() - started)
    return statistics.median(times)


@click.command()
@redis_url_option
@timeout_option
@click.option("--rounds", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Interleaved rounds (ours, raw, ours, raw...).")
@click.option("--calls", default=500, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Calls per variant per round.")
def bench(redis_url: str | None, timeout: float, rounds: int, calls: int) -> None:
    """Time a cache hit (CacheService.get) against raw redis-py GET + orjson.loads on this
    Redis; ratio = median over rounds of ours / raw."""
    prefix = f"cache-service-bench-{uuid.uuid4().hex[:12]}"
    conn = Connection(redis_url, prefix, timeout)
    raw_key = KeySpace(prefix).head + "raw"  # the raw side's key, under our bench prefix
    client = conn.client
    svc = conn.svc
    try:
        svc.set("hit", VALUE, ttl=600)
        client.set(raw_key, orjson.dumps(VALUE), ex=600)
        if svc.get("hit") != VALUE or orjson.loads(client.get(raw_key)) != VALUE:
            conn.failed(RuntimeError("the benchmark's values did not read back"))
        ours: list[float] = []
        raw: list[float] = []
        for i in range(rounds):
            pair = [(ours, lambda: svc.get("hit")),
                    (raw, lambda: orjson.loads(client.get(raw_key)))]
            for into, fn in (pair if i % 2 == 0 else pair[::-1]):
                into.append(_per_call(fn, calls))
        if conn.fell_back():
            conn.failed(RuntimeError("Redis failed during the run (the service fell back)"))
    except (redis.RedisError, OSError) as exc:
        conn.failed(exc)
    finally:
        try:
            svc.clear_all()
            client.delete(raw_key)
        except (redis.RedisError, OSError):
            pass
        conn.close()
    ratio = statistics.median(o / r for o, r in zip(ours, raw, strict=True))
    table = Table("variant", "median µs", "ratio", title=f"get hit on {conn.location}, "
                  f"{rounds} rounds x {calls} calls", title_justify="left")
    table.add_row("raw redis-py GET + orjson.loads", f"{statistics.median(raw) * 1e6:.1f}",
                  "1.00x")
    table.add_row("CacheService.get", f"{statistics.median(ours) * 1e6:.1f}", f"{ratio:.3f}x")
    Console(highlight=False).print(table)
    click.echo(f"keys under prefix {prefix!r} removed")
