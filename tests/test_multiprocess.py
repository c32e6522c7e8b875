"""Many processes, one truth: real worker processes, a real redis-server, a TCP proxy.

What these tests make impossible: a worker invalidates a key while Redis is unreachable and
then exits, idles or is killed, and another worker of the host reads the old value from Redis
after recovery; workers serving different versions from private fallback copies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cache_service import CacheService

from .helpers import eventually, unique
from .servers import ChaosProxy, RedisServer
from .workers import Worker

FAST = {"breaker_min_backoff": 0.1, "breaker_max_backoff": 0.3,
        "socket_timeout": 0.2, "connect_timeout": 0.2}
MODES = ["sync", "asyncio", "uvloop"]

ACTIONS: dict[str, tuple[str, list[Any]]] = {
    "delete": ("delete", ["user:1"]),
    "overwrite": ("set", ["user:1", "new"]),
    "pattern": ("invalidate_pattern", ["user:*"]),
    "clear_all": ("clear_all", []),
}


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    """Start workers; every one is gone when the test ends."""
    started: list[Worker] = []

    def start(url: str, prefix: str, mode: str = "sync", **options: Any) -> Worker:
        worker = Worker(url, prefix, mode, **{**FAST, **options})
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def _old_value_gone(raw: Any, svc: CacheService) -> bool:
    return bool(raw.exists(svc.full_key("user:1")) == 0)


@pytest.mark.parametrize("ending", ["exit", "sigkill", "idle"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_invalidation_outlives_the_process_that_made_it(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer,
        workers: Callable[..., Worker], action: str, ending: str) -> None:
    prefix = unique()
    svc = CacheService(prefix, url=chaos_proxy.url, **FAST)
    svc.set("user:1", "old")
    svc.set("user:2", "old")
    raw = fresh_redis_server.client()
    chaos_proxy.cut()
    writer = workers(chaos_proxy.url, prefix)
    op, args = ACTIONS[action]
    writer.call(op, *args)
    assert writer.call("target") == "open"
    if ending == "exit":
        writer.exit()
    elif ending == "sigkill":
        writer.kill()
    assert raw.exists(svc.full_key("user:1")) == 1  # Redis still holds the old value
    assert svc.get("user:1") != "old"  # this process is on the host's fallback too
    chaos_proxy.heal()
    deadline = time.monotonic() + 3.0
    while not svc.is_redis_available():
        assert svc.get("user:1") != "old"
        assert time.monotonic() < deadline, svc.stats()
        time.sleep(0.01)
    assert _old_value_gone(raw, svc)
    for _ in range(3):
        assert svc.get("user:1") in (None, "new") if action == "overwrite" else \
            svc.get("user:1") is None
    assert svc.stats()["target"]["journal_size"] == 0


def test_replayed_with_every_process_idle(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer,
        workers: Callable[..., Worker]) -> None:
    """Nobody calls after the heal: the background recoverer replays within a backoff."""
    prefix = unique()
    svc = CacheService(prefix, url=chaos_proxy.url, **FAST)
    svc.set("user:1", "old")
    raw = fresh_redis_server.client()
    chaos_proxy.cut()
    writer = workers(chaos_proxy.url, prefix)
    writer.call("delete", "user:1")
    healed = time.monotonic()
    chaos_proxy.heal()
    assert eventually(lambda: _old_value_gone(raw, svc), timeout=3.0)
    took = time.monotonic() - healed
    assert took < 1.5  # within one (short) backoff plus the replay, with nobody calling
    assert eventually(lambda: writer.call("target") == "closed", timeout=2.0)  # just after


@pytest.mark.parametrize("mode", MODES)
def test_a_fresh_process_after_recovery_never_reads_the_old_value(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer,
        workers: Callable[..., Worker], mode: str) -> None:
    """Every process that saw the outage is gone before Redis returns; one started after
    that still finds the outage in the host state, replays, and only then reads Redis."""
    prefix = unique()
    first = workers(chaos_proxy.url, prefix, mode)
    first.call("set", "user:1", "old")
    chaos_proxy.cut()
    first.call("delete", "user:1")
    first.kill()
    chaos_proxy.heal()
    raw = fresh_redis_server.client()
    assert raw.exists(f"cs:{prefix}::user:1") == 1  # nobody replayed yet
    later = workers(chaos_proxy.url, prefix, mode)
    assert later.call("get", "user:1") is None
    assert eventually(lambda: later.call("is_redis_available"), timeout=3.0)
    assert later.call("get", "user:1") is None
    assert raw.exists(f"cs:{prefix}::user:1") == 0


@pytest.mark.parametrize("mode", MODES)
def test_workers_share_the_fallback_during_an_outage(
        chaos_proxy: ChaosProxy, workers: Callable[..., Worker], mode: str) -> None:
    """4 workers: one writes versions 1..N during a cut, three read all the while. No read
    returns a version older than one whose write had returned before the read began."""
    prefix = unique()
    team = [workers(chaos_proxy.url, prefix, mode) for _ in range(4)]
    team[0].call("set", "k", 0)
    chaos_proxy.cut()
    team[0].call("fail")  # every worker of the host is on the shared fallback from now on
    for reader in team[1:]:
        reader.send("hammer", "k", 1.5)
    acks = team[0].call("write_versions", "k", 300)
    reads = [read for reader in team[1:] for read in reader.receive("hammer")]
    assert len(reads) > 300
    stale = [(started, value) for started, value in reads
             if value is not None and value < max((v for v, t in acks if t < started),
                                                  default=0)]
    missed = [(started, value) for started, value in reads
              if value is None and any(t < started for _, t in acks)]
    assert stale == []
    assert missed == []
    for reader in team[1:]:
        assert reader.call("get", "k") == 300


def test_a_worker_still_on_redis_follows_the_host_breaker(
        fresh_redis_server: RedisServer, workers: Callable[..., Worker]) -> None:
    """Redis is fine, but worker A's request failed (its connection, its timeout): A opens
    the host's breaker and deletes a key on the fallback. Worker B, whose Redis works, must
    not read the old value from Redis before A's delete is replayed there."""
    prefix = unique()
    redis_server = fresh_redis_server
    svc = CacheService(prefix, url=redis_server.url)
    svc.set("user:1", "old")
    a = workers(redis_server.url, prefix)
    assert a.call("fail") == "open"
    a.call("delete", "user:1")
    assert svc.get("user:1") is None  # B (this process) is on the shared fallback
    assert eventually(svc.is_redis_available, timeout=3.0)
    assert svc.get("user:1") is None
    assert redis_server.client().exists(svc.full_key("user:1")) == 0


def test_outage_copies_never_served_later_even_after_restarts(
        chaos_proxy: ChaosProxy, workers: Callable[..., Worker]) -> None:
    """A value a worker put in the shared fallback during one outage is not served after
    it, nor in the next outage, though every process restarted in between."""
    prefix = unique()
    first = workers(chaos_proxy.url, prefix)
    chaos_proxy.cut()
    first.call("set", "k", "outage-1 copy")
    assert first.call("get", "k") == "outage-1 copy"
    chaos_proxy.heal()
    assert eventually(lambda: first.call("is_redis_available"), timeout=3.0)
    first.call("delete", "k")
    first.kill()
    second = workers(chaos_proxy.url, prefix)
    chaos_proxy.cut()
    second.call("fail")
    assert second.call("get", "k") is None
    chaos_proxy.heal()


@pytest.mark.parametrize("fallback", ["host", "process"])
def test_fallback_option_says_where_outage_values_live(
        chaos_proxy: ChaosProxy, workers: Callable[..., Worker], fallback: str) -> None:
    prefix = unique()
    a = workers(chaos_proxy.url, prefix, fallback=fallback)
    b = workers(chaos_proxy.url, prefix, fallback=fallback)
    chaos_proxy.cut()
    a.call("fail")
    a.call("set", "k", "from a")
    assert b.call("get", "k") == ("from a" if fallback == "host" else None)
    assert b.call("stats")["target"]["fallback"] == fallback
    chaos_proxy.heal()
