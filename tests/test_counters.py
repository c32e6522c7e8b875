"""Counters stay exact when many threads count at once (memory and a real Redis)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cache_service import CacheService
from cache_service.stats import ServiceCounters, add, value

from .servers import RedisServer

THREADS, CALLS = 8, 2_000


def hammer(work: Callable[[int], None], threads: int = THREADS) -> None:
    start = threading.Barrier(threads)

    def run(n: int) -> None:
        start.wait()
        for _ in range(CALLS):
            work(n)

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_counter_helpers() -> None:
    c = ServiceCounters()
    next(c.hits)
    add(c.hits, 41)
    add(c.misses, 0)
    assert value(c.hits) == 42
    assert c.snapshot() == {"deletes": 0, "hits": 42, "invalidations": 0, "misses": 0,
                            "sets": 0}
    big = ServiceCounters()
    add(big.sets, 3)
    assert value(big.sets) == 3
    assert value(big.sets) == 3  # reading does not advance it


def test_bare_counters_under_threads() -> None:
    c = ServiceCounters()
    hammer(lambda n: (next(c.hits), add(c.misses, 3)))
    assert c.snapshot()["hits"] == THREADS * CALLS
    assert c.snapshot()["misses"] == 3 * THREADS * CALLS


def test_memory_service_counts_exactly() -> None:
    svc = CacheService("exact", url="memory://counters-exact")
    svc.set("k", "v")
    hammer(lambda n: (svc.get("k"), svc.get("absent")))
    stats = svc.stats()
    assert (stats["hits"], stats["misses"]) == (THREADS * CALLS, THREADS * CALLS)
    assert stats["target"]["memory_reads"] == 2 * THREADS * CALLS


def test_redis_service_counts_exactly(redis_server: RedisServer) -> None:
    svc = CacheService("exact-redis", url=redis_server.url)
    try:
        svc.set("k", {"a": 1})
        hammer(lambda n: (svc.get("k"), svc.get(f"absent:{n}"), svc.set(f"w:{n}", n)),
               threads=4)
        stats = svc.stats()
        assert (stats["hits"], stats["misses"], stats["sets"]) == (
            4 * CALLS, 4 * CALLS, 4 * CALLS + 1)
    finally:
        svc.clear_all()
        svc.close()
