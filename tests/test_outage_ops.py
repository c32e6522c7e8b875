"""Outages for the operations of issue 9: every write made while Redis is cut or hung goes to
the memory store and into the journal, and nothing stale is served after recovery: not the
value Redis held, not our outage copy; across two real processes for tags."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

from cache_service import AsyncCacheService, CacheService

from .helpers import on_flavours, unique
from .servers import ChaosProxy, RedisServer
from .test_chaos import outage, recover, service

# op -> (what it does during the outage, what it returns then)
WRITES: dict[str, tuple[Callable[[CacheService], Any], Any]] = {
    "set_many": (lambda s: s.set_many({"user:1": "new", "other": 1}), None),
    "set_many_tagged": (lambda s: s.set_many({"user:1": "new"}, tags=["t"]), None),
    "set_tagged": (lambda s: s.set("user:1", "new", tags=["t"]), None),
    "add": (lambda s: s.add("user:1", "new"), True),  # the memory store starts empty
    "incr": (lambda s: s.incr("user:1"), 1),  # counts from 0 in this process' memory
    "decr": (lambda s: s.decr("user:1", 2), -2),
    "touch": (lambda s: s.touch("user:1", 600), False),
}


@on_flavours("fresh_redis_server", "op, mode",
             redis=[(op, mode) for mode in ("cut", "hang") for op in WRITES],
             valkey=[(op, "cut") for op in WRITES])
def test_writes_during_an_outage_leave_nothing_stale(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer, mode: str, op: str) -> None:
    svc = service(chaos_proxy)
    raw = fresh_redis_server.client()
    old = 10 if op in ("incr", "decr") else "old"
    svc.set("user:1", old)
    svc.set("user:2", old)
    outage(chaos_proxy, mode)
    write, during = WRITES[op]
    assert write(svc) == during
    if op != "touch":
        assert svc.get("user:1") != old  # our outage copy, never Redis' old value
    assert raw.exists(svc.full_key("user:1")) == 1  # Redis still holds the old value
    chaos_proxy.heal()
    assert recover(svc) < 2.0
    for _ in range(3):
        assert svc.get("user:1") is None
        assert svc.get_many(["user:1", "user:2"]) == {"user:2": old}
    assert raw.exists(svc.full_key("user:1")) == 0
    assert (svc.exists("user:1"), svc.ttl("user:1")) == (False, None)
    stats = svc.stats()["target"]
    assert (stats["journal_size"], stats["breaker_state"]) == (0, "closed")
    if op in ("incr", "decr"):  # the pre-outage count is not resumed
        assert svc.incr("user:1") == 1


@on_flavours("fresh_redis_server", "mode", redis=["cut", "hang"], valkey=["hang"])
def test_tags_invalidated_during_an_outage(chaos_proxy: ChaosProxy,
                                           fresh_redis_server: RedisServer, mode: str) -> None:
    svc = service(chaos_proxy)
    direct = CacheService(svc.prefix, url=fresh_redis_server.url)  # another process' view
    svc.set("u42:profile", "old", tags=["user:42"])
    svc.set_many({"u42:a": "old", "u42:b": "old"}, tags=["user:42", "page"])
    svc.set("u7", "old", tags=["user:7"])
    outage(chaos_proxy, mode)
    svc.set("u42:during", "outage copy", tags=["user:42"])
    assert svc.get("u42:during") == "outage copy"
    svc.invalidate_tags("user:42")
    assert svc.get("u42:during") is None  # applied to the memory store at once
    assert svc.stats()["target"]["journal_size"] == 2  # the key written, and the tag
    assert direct.get("u42:a") == "old"  # Redis still has it: the invalidation is pending
    chaos_proxy.heal()
    recover(svc)
    for reader in (svc, direct):
        assert reader.get_many(["u42:profile", "u42:a", "u42:b", "u42:during", "u7"]) == {
            "u7": "old"}
    svc.set("u42:profile", "new", tags=["user:42"])
    assert direct.get("u42:profile") == "new"


CHILD = textwrap.dedent("""
    import sys, time
    from cache_service import CacheService
    url, prefix, mode = sys.argv[1:4]
    svc = CacheService(prefix, url=url, breaker_min_backoff=0.05, breaker_max_backoff=0.2,
                       socket_timeout=0.15, connect_timeout=0.15)
    svc.invalidate_tags("user:42")  # Redis is unreachable: the memory store and the journal
    assert svc.stats()["target"]["journal_size"] == 1, svc.stats()
    print("invalidated", flush=True)
    if mode == "recover":
        sys.stdin.readline()  # the network is back
        deadline = time.monotonic() + 5
        while not svc.is_redis_available():
            assert time.monotonic() < deadline, svc.stats()
            time.sleep(0.02)
        print("recovered", flush=True)
""")


def _child(url: str, prefix: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, url, prefix, mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _two_processes(chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer,
                   mode: str) -> None:
    svc = service(chaos_proxy)
    direct = CacheService(svc.prefix, url=fresh_redis_server.url)
    svc.set("u42", "old", tags=["user:42"])
    svc.set("u7", "old", tags=["user:7"])
    chaos_proxy.cut()
    assert svc.get("u42") is None  # this process is in the outage too (empty memory)
    with _child(chaos_proxy.url, svc.prefix, mode) as child:
        try:
            assert child.stdout is not None
            assert child.stdin is not None
            assert child.stdout.readline().strip() == "invalidated"
            chaos_proxy.heal()
            if mode == "recover":
                child.stdin.write("\n")
                child.stdin.flush()
                assert child.stdout.readline().strip() == "recovered"
            assert child.wait(timeout=30) == 0
        finally:
            child.kill()
    recover(svc)
    for reader in (svc, direct):
        assert reader.get("u42") is None
        assert reader.get("u7") == "old"


def test_tags_invalidated_by_another_process_during_an_outage(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer) -> None:
    """The child invalidates a tag while Redis is cut, recovers (replaying it), exits; this
    process reads after its own recovery: the tagged value is gone, for it and for a reader
    that never saw the outage."""
    _two_processes(chaos_proxy, fresh_redis_server, "recover")


def test_tags_invalidated_by_a_process_that_exits_during_the_outage(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer) -> None:
    _two_processes(chaos_proxy, fresh_redis_server, "exit")


def test_late_write_of_ours_is_never_served_by_get_many(chaos_proxy: ChaosProxy,
                                                        fresh_redis_server: RedisServer) -> None:
    """A SET of ours that timed out may land after recovery: ``get_many`` checks its stamp
    against the journal's tombstones like ``get`` does (its fast path steps aside)."""
    svc = service(chaos_proxy)
    raw = fresh_redis_server.client()
    svc.set_many({"k": "v1", "j": "v1"})
    late_payload = raw.get(svc.full_key("k"))
    chaos_proxy.cut()
    svc.delete("k")
    chaos_proxy.heal()
    recover(svc)
    raw.set(svc.full_key("k"), late_payload or b"")  # the delayed SET lands now
    assert svc.get_many(["k", "j"]) == {"j": "v1"}
    assert svc.stats()["target"]["stale_blocked"] == 1
    assert raw.exists(svc.full_key("k")) == 0


@on_flavours("fresh_redis_server", "mode", redis=["cut", "hang"], valkey=["cut"])
def test_async_service_through_an_outage(chaos_proxy: ChaosProxy,
                                         fresh_redis_server: RedisServer, mode: str) -> None:
    """The same operations driven by ``Target.arun``: the asyncio pipeline and scripts fail
    over to memory, and nothing stale is served after recovery."""
    raw = fresh_redis_server.client()

    async def main() -> None:
        svc = AsyncCacheService(unique(), url=chaos_proxy.url, breaker_min_backoff=0.05,
                                breaker_max_backoff=0.2, socket_timeout=0.15,
                                connect_timeout=0.15)
        await svc.set_many({"a": "old", "b": "old", "n": 10})
        await svc.set("t", "old", tags=["user:1"])
        outage(chaos_proxy, mode)
        await svc.set_many({"a": "new"}, tags=["x"])
        assert await svc.incr("n") == 1
        assert await svc.add("b", "new") is True
        await svc.invalidate_tags("user:1")
        assert await svc.get_many(["a", "b", "n", "t"]) == {"a": "new", "b": "new", "n": 1}
        assert raw.exists(svc.full_key("a"), svc.full_key("b"), svc.full_key("t")) == 3
        chaos_proxy.heal()
        deadline = time.monotonic() + 3
        while not await svc.is_redis_available():
            assert time.monotonic() < deadline, await svc.stats()
            await asyncio.sleep(0.02)
        assert await svc.get_many(["a", "b", "n", "t"]) == {}
        assert raw.exists(svc.full_key("a"), svc.full_key("b"), svc.full_key("n")) == 0
        assert (await svc.stats())["target"]["journal_size"] == 0
        await svc.aclose()

    asyncio.run(main())
