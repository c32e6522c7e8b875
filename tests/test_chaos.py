"""Outage correctness under real faults: a cut or hung network (TCP proxy), SIGSTOP, restarts.

The bug these tests make impossible: Redis holds an old value, the app invalidates it while
Redis is unreachable, Redis comes back with the old value, and the cache serves it again.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from cache_service import CacheService

from .helpers import eventually, on_each_server, on_flavours, unique
from .servers import ChaosProxy, RedisServer

FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.2,
        "socket_timeout": 0.15, "connect_timeout": 0.15}


def service(proxy: ChaosProxy, prefix: str | None = None, **kwargs: Any) -> CacheService:
    """A service that reaches Redis only through ``proxy``."""
    return CacheService(prefix or unique(), url=proxy.url, **{**FAST, **kwargs})


def outage(proxy: ChaosProxy, mode: str) -> None:
    """Make Redis unreachable: ``cut`` refuses/resets, ``hang`` swallows every byte."""
    proxy.cut() if mode == "cut" else proxy.hang()


def recover(svc: CacheService, timeout: float = 3.0) -> float:
    """Wait until the service is back on Redis; returns the seconds it took."""
    start = time.monotonic()
    assert eventually(svc.is_redis_available, timeout=timeout), svc.stats()
    return time.monotonic() - start


ACTIONS: dict[str, Callable[[CacheService], Any]] = {
    "delete": lambda s: s.delete("user:1"),
    "overwrite": lambda s: s.set("user:1", "new"),
    "pattern": lambda s: s.invalidate_pattern("user:*"),
    "clear_all": lambda s: s.clear_all(),
}


@on_flavours("fresh_redis_server", "action, mode",
             redis=[(action, mode) for mode in ("cut", "hang") for action in ACTIONS],
             valkey=[("pattern", "cut"), ("delete", "hang")])
def test_no_stale_read_after_invalidating_during_outage(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer, mode: str, action: str) -> None:
    svc = service(chaos_proxy)
    svc.set("user:1", "old")
    svc.set("user:2", "old")
    outage(chaos_proxy, mode)
    ACTIONS[action](svc)
    assert svc.get("user:1") != "old"
    raw = fresh_redis_server.client()
    assert raw.exists(svc.full_key("user:1")) == 1  # Redis still holds the old value
    chaos_proxy.heal()
    assert recover(svc) < 2.0
    for _ in range(3):
        assert svc.get("user:1") is None  # replayed: neither the old value nor our outage copy
    assert raw.exists(svc.full_key("user:1")) == 0
    expected_user2 = None if action in ("pattern", "clear_all") else "old"
    assert svc.get("user:2") == expected_user2
    stats = svc.stats()["target"]
    assert (stats["journal_size"], stats["replays"], stats["breaker_state"]) == (0, 1, "closed")


def test_other_writers_truth_wins_over_our_outage_copy(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer) -> None:
    svc = service(chaos_proxy)
    raw = fresh_redis_server.client()
    svc.set("read-only", "v1")
    svc.set("written", "v1")
    chaos_proxy.cut()
    svc.set("read-only-in-memory", "ours")  # makes the memory store non-empty
    svc.set("written", "our outage copy")
    other = CacheService(svc.prefix, url=fresh_redis_server.url)  # another process' view
    other.set("read-only", "truth")
    other.set("written", "truth")
    chaos_proxy.heal()
    recover(svc)
    assert svc.get("read-only") == "truth"
    assert svc.get("written") in (None, "truth")
    assert svc.get("read-only-in-memory") is None
    assert raw.exists(svc.full_key("read-only-in-memory")) == 0


@on_each_server
def test_restarted_empty(fresh_redis_server: RedisServer) -> None:
    with ChaosProxy(*fresh_redis_server.address) as proxy:
        svc = service(proxy)
        svc.set("k", "old")
        fresh_redis_server.kill()
        svc.set("k", "during")
        fresh_redis_server.restart(keep_data=False)
        recover(svc)
        assert svc.get("k") is None
        svc.set("k", "after")
        assert svc.get("k") == "after"


def test_journal_overflow_clears_the_affected_prefixes_only(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer) -> None:
    svc = service(chaos_proxy, journal_max_entries=5)
    bystander = service(chaos_proxy)
    for i in range(20):
        svc.set(f"k{i}", i)
    bystander.set("k", "untouched")
    chaos_proxy.cut()
    for i in range(10):
        svc.delete(f"k{i}")
    assert svc.stats()["target"]["journal_overflows"] >= 1
    assert svc.stats()["target"]["journal_size"] <= 5
    chaos_proxy.heal()
    recover(svc)
    # the overflowed journal cleared svc's whole prefix, even keys not deleted
    assert [svc.get(f"k{i}") for i in range(20)] == [None] * 20
    assert bystander.get("k") == "untouched"


@on_each_server
def test_replay_cut_halfway_resumes_and_loses_nothing(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer) -> None:
    svc = service(chaos_proxy, socket_timeout=0.5)
    raw = fresh_redis_server.client()
    keys = [f"k{i}" for i in range(3000)]
    svc.set(keys[0], "old")
    old = raw.get(svc.full_key(keys[0])) or b""
    with raw.pipeline(transaction=False) as pipe:
        for k in keys:  # old values that Redis still has when we come back
            pipe.set(svc.full_key(k), old)
        pipe.execute()
    chaos_proxy.cut()
    svc.delete(*keys[:1000])
    for prefix in ("k1", "k2", "k5"):
        svc.invalidate_pattern(f"{prefix}*")
    journal = svc.stats()["target"]["journal_size"]
    chaos_proxy.heal()
    chaos_proxy.latency(0.05)
    # the background recoverer probes after its backoff: connect + handshake + PING + two
    # UNLINK batches, then slow SCANs: cut in the middle
    assert eventually(lambda: svc.stats()["target"]["breaker_state"] == "draining", timeout=3)
    time.sleep(0.3)
    chaos_proxy.cut()
    assert eventually(lambda: svc.stats()["target"]["breaker_state"] == "open", timeout=3)
    stats = svc.stats()["target"]
    assert 0 < stats["journal_size"] < journal, "replay should have stopped halfway"
    chaos_proxy.heal()
    recover(svc)
    assert svc.stats()["target"]["journal_size"] == 0
    gone = {k for k in keys if k in keys[:1000] or k.startswith(("k1", "k2", "k5"))}
    for k in keys:
        assert raw.exists(svc.full_key(k)) == (k not in gone), k


def test_late_write_of_ours_is_never_served(chaos_proxy: ChaosProxy,
                                            fresh_redis_server: RedisServer) -> None:
    """A SET of ours that timed out may reach Redis after recovery: its stamp gives it away."""
    svc = service(chaos_proxy)
    raw = fresh_redis_server.client()
    svc.set("k", "v1")
    late_payload = raw.get(svc.full_key("k"))
    chaos_proxy.cut()
    svc.delete("k")
    chaos_proxy.heal()
    recover(svc)
    raw.set(svc.full_key("k"), late_payload or b"")  # the delayed SET lands now
    assert svc.get("k") is None
    assert svc.stats()["target"]["stale_blocked"] == 1
    assert raw.exists(svc.full_key("k")) == 0
    svc.set("k", "v2")  # a newer write of ours is served normally
    assert svc.get("k") == "v2"


@on_each_server
def test_frozen_server_applies_buffered_writes_late_without_stale_reads(
        fresh_redis_server: RedisServer) -> None:
    svc = CacheService(unique(), url=fresh_redis_server.url, **FAST)
    svc.set("k", "v0")
    fresh_redis_server.freeze()
    try:
        svc.set("k", "v1")  # times out; the server has it buffered and runs it on SIGCONT
        svc.delete("k")
    finally:
        fresh_redis_server.thaw()
    recover(svc)
    for _ in range(5):
        assert svc.get("k") is None
        time.sleep(0.02)


def test_eight_threads_through_cut_heal_hang_heal(chaos_proxy: ChaosProxy) -> None:
    svc = service(chaos_proxy)
    errors: list[BaseException] = []
    stale: list[str] = []
    stop = threading.Event()
    ops = [0]

    def worker(n: int) -> None:
        rng = random.Random(n)
        latest: dict[str, int | None] = {}  # this thread owns its keys: an exact model
        version = 0
        try:
            while not stop.is_set():
                key = f"t{n}:k{rng.randrange(20)}"
                r = rng.random()
                if r < 0.4:
                    version += 1
                    svc.set(key, {"v": version})
                    latest[key] = version
                elif r < 0.55:
                    svc.delete(key)
                    latest[key] = None
                elif r < 0.58:
                    svc.invalidate_pattern(f"t{n}:k1*")
                    for k in latest:
                        if k.startswith(f"t{n}:k1"):
                            latest[k] = None
                else:
                    got = svc.get(key)
                    if got is not None and got["v"] != latest.get(key):
                        stale.append(f"{key}: got {got['v']}, latest {latest.get(key)}")
                ops[0] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    try:
        for phase in ("cut", "heal", "hang", "heal"):
            chaos_proxy.heal() if phase == "heal" else outage(chaos_proxy, phase)
            if phase == "heal":
                assert recover(svc) < 2.0
            time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        chaos_proxy.heal()
    assert errors == []
    assert stale == []
    stats = svc.stats()["target"]
    assert stats["breaker_opened"] == 2
    assert ops[0] > 1000


@on_each_server
def test_recovery_within_two_seconds_with_default_settings(chaos_proxy: ChaosProxy) -> None:
    svc = CacheService(unique(), url=chaos_proxy.url)  # default timeouts and backoff
    svc.set("k", 1)
    chaos_proxy.cut()
    deadline = time.monotonic() + 3.5  # long enough for the backoff to reach its cap
    while time.monotonic() < deadline:
        svc.get("k")
        time.sleep(0.01)
    chaos_proxy.heal()
    healed = time.monotonic()
    while svc.stats()["target"]["breaker_state"] != "closed":
        svc.get("k")  # ordinary traffic is what probes
        time.sleep(0.01)
        assert time.monotonic() - healed < 2.0, svc.stats()["target"]
