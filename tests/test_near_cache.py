"""The near cache against real servers: hits without I/O, coherence with other processes'
writes, the fill races, and the near cache emptying whenever coherence is lost. The coherence
tests run on Valkey as well (``@on_each_server``: the server matrix)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from cache_service import AsyncCacheService, CacheService, ConfigurationError, NearCache
from cache_service._near.store import MISS, NearStore
from cache_service._redis.backend import drop_idle

from .helpers import eventually, on_each_server, on_flavours, unique
from .near_chaos import chaos_run
from .servers import ChaosProxy, RedisServer
from .workers import Worker


def near_of(svc: Any) -> NearStore:
    near = svc._target.near
    assert near is not None
    return near  # type: ignore[no-any-return]


def coherent(svc: Any, timeout: float = 10.0) -> None:
    """Wait until the tracker of ``svc`` is linked and trusted (a get starts it)."""
    near = near_of(svc)

    def ready() -> bool:
        if time.monotonic() < near.valid_until:
            return True
        svc._target.tracker.ensure_running()
        return False

    eventually(ready, timeout=timeout)


def filled(svc: CacheService, key: str, expected: Any, timeout: float = 5.0) -> None:
    """Read ``key`` until the near cache holds it with ``expected``."""
    k = svc.full_key(key)

    def held() -> bool:
        assert svc.get(key) == expected
        return near_of(svc).lookup(k) is not MISS

    eventually(held, timeout=timeout)


def commands(server: RedisServer) -> int:
    """How many commands the server has run (INFO's total)."""
    return int(redis.Redis(*server.address).info("stats")["total_commands_processed"])


def tracking_clients(server: RedisServer) -> list[dict[str, Any]]:
    clients = redis.Redis(*server.address).client_list()
    return [c for c in clients if "t" in c["flags"]]


@pytest.fixture
def svc(fresh_redis_server: RedisServer) -> Iterator[CacheService]:
    service = CacheService(unique("near"), url=fresh_redis_server.url, near_cache=True,
                           socket_timeout=1.0, connect_timeout=1.0)
    coherent(service)
    yield service
    service.close()


# -- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    {"max_entries": 0}, {"max_bytes": -1}, {"max_entries": True}, {"max_ttl": 0},
    {"max_ttl": float("inf")}, {"max_ttl": "5"},
])
def test_bad_bounds_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="NearCache"):
        NearCache(**bad)


def test_bad_near_cache_argument_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="near_cache must be"):
        CacheService("p", url="redis://127.0.0.1:1/0", near_cache="yes")  # type: ignore[arg-type]


def test_construction_touches_nothing_and_memory_urls_have_none() -> None:
    svc = CacheService(unique("near"), url="redis://127.0.0.1:1/0", near_cache=True)
    assert svc._target.tracker is not None
    assert not svc._target.tracker._running
    assert CacheService("m", url="memory://near", near_cache=True)._near is None


# -- hits ------------------------------------------------------------------------------------

@on_each_server
def test_a_hit_does_no_io_and_hands_out_fresh_copies(svc: CacheService,
                                                     fresh_redis_server: RedisServer) -> None:
    svc.set("flat", {"a": 1, "b": "x"})
    svc.set("deep", {"a": [1, 2], "b": {"c": 3}})
    svc.set("s", "text")
    filled(svc, "flat", {"a": 1, "b": "x"})
    filled(svc, "deep", {"a": [1, 2], "b": {"c": 3}})
    filled(svc, "s", "text")
    before = commands(fresh_redis_server)
    for _ in range(200):
        first = svc.get("flat")
        first["a"] = 99
        assert svc.get("flat") == {"a": 1, "b": "x"}
        deep = svc.get("deep")
        deep["a"].append(3)
        deep["b"]["c"] = 4
        assert svc.get("deep") == {"a": [1, 2], "b": {"c": 3}}
        assert svc.get("s") == "text"
    # the tracker's heartbeats are the only commands meanwhile (one ROLE per 0.1 s)
    assert commands(fresh_redis_server) - before < 40
    stats = svc.stats()
    assert stats["target"]["near_hits"] >= 1000
    assert stats["hits"] >= 1000
    assert stats["target"]["near_entries"] == 3
    assert stats["target"]["near_bytes"] > 0


def test_async_service_shares_the_near_cache(svc: CacheService) -> None:
    asvc = AsyncCacheService(svc.prefix, url=svc._location.describe(), near_cache=True)
    svc.set("k", {"v": 1})
    filled(svc, "k", {"v": 1})

    async def main() -> list[Any]:
        return [await asvc.get("k") for _ in range(50)]

    hits = near_of(svc).snapshot()["near_hits"]
    assert asyncio.run(main()) == [{"v": 1}] * 50
    assert near_of(svc).snapshot()["near_hits"] - hits == 50


@on_each_server
def test_entries_are_bounded_and_never_outlive_the_redis_ttl(
        fresh_redis_server: RedisServer) -> None:
    svc = CacheService(unique("near"), url=fresh_redis_server.url, near_cache=NearCache(
        max_entries=20, max_bytes=4000))
    coherent(svc)
    for i in range(100):
        svc.set(f"k{i}", "v" * 50)
        filled(svc, f"k{i}", "v" * 50)  # (the push of our own SET may withdraw a first fill)
    near = near_of(svc)
    assert len(near) <= 20
    assert near.nbytes <= 4000
    assert near.snapshot()["near_evictions"] > 0
    svc.set("short", "x", ttl=0.3)
    filled(svc, "short", "x")
    time.sleep(0.35)
    assert svc.get("short") is None  # the entry kept the key's PTTL, not longer


def test_max_ttl_caps_an_entry(fresh_redis_server: RedisServer) -> None:
    svc = CacheService(unique("near"), url=fresh_redis_server.url,
                       near_cache=NearCache(max_ttl=0.2))
    coherent(svc)
    svc.set("k", "v", ttl=60)
    filled(svc, "k", "v")
    time.sleep(0.25)
    assert near_of(svc).lookup(svc.full_key("k")) is MISS


def test_stale_while_revalidate_and_tagged_values_are_not_kept_near(svc: CacheService) -> None:
    svc.set("tagged", "v", tags=["t"])
    for _ in range(5):
        assert svc.get("tagged") == "v"
    assert near_of(svc).lookup(svc.full_key("tagged")) is MISS
    svc.invalidate_tags("t")
    assert svc.get("tagged") is None
    assert svc.get_or_set("swr", lambda: "loaded", ttl=60, stale_while_revalidate=5) == "loaded"
    for _ in range(5):
        assert svc.get("swr") == "loaded"
    assert near_of(svc).lookup(svc.full_key("swr")) is MISS


def test_get_or_set_is_served_near(svc: CacheService) -> None:
    calls = []
    assert svc.get_or_set("g", lambda: calls.append(1) or {"n": 1}) == {"n": 1}
    filled(svc, "g", {"n": 1})
    hits = near_of(svc).snapshot()["near_hits"]
    assert svc.get_or_set("g", lambda: calls.append(1) or {"n": 2}) == {"n": 1}
    assert near_of(svc).snapshot()["near_hits"] > hits
    assert calls == [1]


# -- this process's own writes ---------------------------------------------------------------

@on_each_server
def test_own_writes_never_leave_the_old_value(svc: CacheService) -> None:
    other = CacheService(svc.prefix, url=svc._location.describe())  # same target, no near
    steps: list[tuple[str, Any]] = [
        ("set", lambda: svc.set("k", 2)), ("other set", lambda: other.set("k", 3)),
        ("set_many", lambda: svc.set_many({"k": 4})), ("incr", lambda: svc.incr("k")),
        ("delete", lambda: svc.delete("k")), ("add", lambda: svc.add("k", 6)),
        ("pattern", lambda: svc.invalidate_pattern("k*")), ("other add", lambda: other.add("k", 8)),
        ("clear_all", svc.clear_all),
    ]
    expected = {"set": 2, "other set": 3, "set_many": 4, "incr": 5, "delete": None, "add": 6,
                "pattern": None, "other add": 8, "clear_all": None}
    svc.set("k", 1)
    filled(svc, "k", 1)
    for name, step in steps:
        step()
        assert svc.get("k") == expected[name], name  # at once: no wait for Redis' push
        if expected[name] is not None:
            filled(svc, "k", expected[name])


# -- other processes' writes ---------------------------------------------------------------------

@on_each_server
def test_other_processes_writes_reach_the_near_cache(svc: CacheService,
                                                    fresh_redis_server: RedisServer) -> None:
    raw = redis.Redis(*fresh_redis_server.address)
    with Worker(fresh_redis_server.url, svc.prefix) as writer:
        for key in ("a", "b", "c", "d"):
            writer.call("set", key, f"{key}1")
            filled(svc, key, f"{key}1")
        writer.call("set", "a", "a2")
        eventually(lambda: svc.get("a") == "a2", timeout=2)
        writer.call("delete", "b")
        eventually(lambda: svc.get("b") is None, timeout=2)
        writer.call("invalidate_pattern", "c*")
        eventually(lambda: svc.get("c") is None, timeout=2)
        writer.call("set", "e", "e1", 0.3)  # expiry done by Redis
        filled(svc, "e", "e1")
        eventually(lambda: svc.get("e") is None, timeout=2)
        filled(svc, "a", "a2")
        writer.call("clear_all")
        eventually(lambda: svc.get("a") is None and svc.get("d") is None, timeout=2)
        writer.call("set", "f", "f1")
        filled(svc, "f", "f1")
        raw.flushdb()  # someone else's FLUSHDB
        eventually(lambda: svc.get("f") is None, timeout=2)
        writer.exit()
    assert svc.stats()["target"]["near_invalidations"] >= 6


@on_each_server
def test_redis_evictions_reach_the_near_cache(svc: CacheService,
                                             fresh_redis_server: RedisServer) -> None:
    raw = redis.Redis(*fresh_redis_server.address)
    used = int(raw.info("memory")["used_memory"])
    raw.config_set("maxmemory", used + 2_000_000)
    raw.config_set("maxmemory-policy", "allkeys-lru")
    try:
        for i in range(20):
            svc.set(f"keep{i}", i)
            filled(svc, f"keep{i}", i)
        filler = redis.Redis(*fresh_redis_server.address)
        for i in range(400):  # ~4 MB through a 2 MB budget: the keep keys are evicted
            filler.set(f"{svc.prefix}:filler{i}", b"x" * 10_000)
        gone = [i for i in range(20) if raw.exists(svc.full_key(f"keep{i}")) == 0]
        assert gone, "nothing was evicted"
        for i in range(20):
            expected = None if i in gone else i
            eventually(lambda i=i, e=expected: svc.get(f"keep{i}") == e, timeout=2)  # type: ignore[misc]
    finally:
        raw.config_set("maxmemory", 0)


# -- the races ----------------------------------------------------------------------------------

@on_each_server
def test_a_reply_read_before_a_write_but_arriving_after_its_invalidation_is_not_kept(
        fresh_redis_server: RedisServer) -> None:
    """The fill's reply is held back by a proxy while another client overwrites the key; the
    tracker (on a connection the proxy spares) hears of the write first."""
    # One reader thread does every data call after the drop: its connection (redis-py's pool,
    # or our layer's connection per thread) is the one the latency holds back.
    with ChaosProxy(*fresh_redis_server.address) as proxy, \
            ThreadPoolExecutor(max_workers=1) as reader:
        svc = CacheService(unique("near"), url=proxy.url, near_cache=True,
                           socket_timeout=2.0, connect_timeout=2.0)
        coherent(svc)
        raw = redis.Redis(*fresh_redis_server.address)
        svc.set("k", "old")
        drop_idle(svc._target.sync_client())  # only the tracker's link is left: spare it
        proxy.latency(0.0, existing=False)
        reader.submit(svc.set, "other", 1).result()  # a new data connection, held back later
        assert reader.submit(svc.get, "other").result() == 1  # (and the fill's script loaded)
        proxy.latency(0.5)
        pending = reader.submit(svc.get, "k")
        time.sleep(0.15)  # the GET has run on the server; its reply is in the proxy
        raw.set(svc.full_key("k"), raw.get(svc.full_key("k")).replace(b"old", b"new"))  # type: ignore[union-attr]
        assert pending.result() == "old"  # what Redis said when it was asked
        assert near_of(svc).lookup(svc.full_key("k")) is MISS  # but not kept
        proxy.heal()
        assert svc.get("k") == "new"
        svc.close()


def test_an_invalidation_during_a_fill_wins() -> None:
    near = NearStore(NearCache())
    near.trust(time.monotonic() + 10)
    token = near.begin("k")
    assert token is not None
    near.invalidate(["k"])
    near.store("k", token, "old", b"old", ttl_ms=10_000, decode=bytes.decode)
    assert near.lookup("k") is MISS
    token = near.begin("k")
    near.lose()
    near.store("k", token, "old", b"old", ttl_ms=10_000, decode=bytes.decode)
    assert near.lookup("k") is MISS
    near.trust(time.monotonic() + 10)
    first, second = near.begin("k"), near.begin("k")
    near.store("k", first, "first", b"first", ttl_ms=10_000, decode=bytes.decode)
    assert near.lookup("k") is MISS  # a later fill of the key started: the earlier loses
    near.store("k", second, "second", b"second", ttl_ms=10_000, decode=bytes.decode)
    assert near.lookup("k") == "second"


# -- losing coherence ---------------------------------------------------------------------------

@on_each_server
def test_a_killed_listener_empties_the_near_cache_until_it_is_back(
        svc: CacheService, fresh_redis_server: RedisServer) -> None:
    svc.set("k", 1)
    filled(svc, "k", 1)
    links = svc._target.tracker.links_made
    raw = redis.Redis(*fresh_redis_server.address)
    [tracker] = tracking_clients(fresh_redis_server)
    raw.client_kill_filter(_id=tracker["id"])
    eventually(lambda: svc._target.tracker.links_made > links, timeout=5)
    assert near_of(svc).snapshot()["near_flushes"] >= 1
    raw.set(svc.full_key("k"), b"not ours")  # changed while nobody listened? it is re-read
    assert svc.get("k") is None
    svc.set("k", 2)
    filled(svc, "k", 2)


@on_each_server
def test_a_silently_hung_listener_stops_hits_within_half_a_second(
        fresh_redis_server: RedisServer) -> None:
    with ChaosProxy(*fresh_redis_server.address) as proxy:
        svc = CacheService(unique("near"), url=proxy.url, near_cache=True,
                           socket_timeout=0.25, connect_timeout=0.25)
        coherent(svc)
        svc.set("k", "v")
        filled(svc, "k", "v")
        proxy.hang()
        hung = time.monotonic()
        near = near_of(svc)
        while near.lookup(svc.full_key("k")) is not MISS:
            time.sleep(0.005)
        stopped = time.monotonic() - hung
        assert stopped < 0.5 + 0.2, stopped  # WINDOW after the last answered heartbeat
        assert svc.get("k") is None  # the GET times out: the fallback has no copy of it
        assert svc._target.breaker.is_open
        proxy.heal()
        eventually(lambda: svc._target.breaker.state == "closed", timeout=10)
        coherent(svc)
        filled(svc, "k", "v")
        svc.close()


def test_an_outage_empties_it_and_invalidations_during_it_hold(
        fresh_redis_server: RedisServer) -> None:
    with ChaosProxy(*fresh_redis_server.address) as proxy:
        url = proxy.url
        svc = CacheService(unique("near"), url=url, near_cache=True,
                           socket_timeout=0.25, connect_timeout=0.25)
        coherent(svc)
        with Worker(url, svc.prefix, socket_timeout=0.25, connect_timeout=0.25) as writer:
            for key in ("a", "b"):
                svc.set(key, f"{key}1")
                filled(svc, key, f"{key}1")
            proxy.cut()
            assert writer.call("delete", "a") == 0  # on the fallback, journaled
            eventually(lambda: svc.get("b") is not None and svc._target.breaker.is_open,
                       timeout=5)
            assert len(near_of(svc)) == 0
            assert svc.get("a") is None
            proxy.heal()
            eventually(lambda: svc._target.breaker.state == "closed", timeout=15)
            coherent(svc)
            for _ in range(20):
                assert svc.get("a") is None
            filled(svc, "b", "b1")
            writer.exit()
        svc.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_child_starts_empty_and_stays_correct(svc: CacheService,
                                                      fresh_redis_server: RedisServer) -> None:
    svc.set("k", "parent")
    filled(svc, "k", "parent")
    raw = redis.Redis(*fresh_redis_server.address)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        try:
            empty = len(near_of(svc)) == 0
            raw.set(svc.full_key("k"), raw.get(svc.full_key("k")).replace(  # type: ignore[union-attr]
                b"parent", b"childs"))
            seen = svc.get("k")
            os.write(write, f"{empty} {seen}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 100).decode() == "True childs"
    os.close(read)
    eventually(lambda: svc.get("k") == "childs", timeout=2)  # the parent heard it too


@pytest.mark.slow
@on_each_server
def test_chaos_run_serves_no_version_older_than_an_acknowledged_one(
        fresh_redis_server: RedisServer) -> None:
    figures = chaos_run(fresh_redis_server)
    assert figures.stale_reads == 0, figures.stale
    assert figures.near_hits > 1000, figures.summary()
    assert figures.versions > 100, figures.summary()


def test_over_tls_the_tracker_reads_alone_and_stays_coherent(tls_server: RedisServer) -> None:
    url = f"{tls_server.url}?ssl_ca_certs={tls_server.tls.ca_cert}"  # type: ignore[union-attr]
    svc = CacheService(unique("near-tls"), url=url, near_cache=True)
    coherent(svc)
    assert svc._target.tracker._helped is False  # type: ignore[union-attr]
    svc.set("k", "v1")
    filled(svc, "k", "v1")
    with tls_server.client() as raw:
        raw.delete(svc.full_key("k"))
    eventually(lambda: svc.get("k") is None, timeout=2)
    svc.close()


@pytest.mark.parametrize("value", [{"a": 1, "b": "x"}, {"a": [1, 2], "b": "x"}, [1, [2]]])
def test_the_value_a_fill_returns_is_not_the_one_kept(svc: CacheService, value: Any) -> None:
    svc.set("k", value)
    near = near_of(svc)
    k = svc.full_key("k")
    while True:  # the read that fills the entry hands its value to its caller: mutate it
        before = k in near.entries
        got = svc.get("k")
        if isinstance(got, dict):
            got["b"] = "changed"
        got[1 if isinstance(got, list) else "a"] = "mutated"
        if not before and k in near.entries:
            break
    assert svc.get("k") == value
    hit = svc.get("k")
    hit[1 if isinstance(hit, list) else "a"] = "again"
    assert svc.get("k") == value


@on_flavours("fresh_redis_server", "mode", redis=["sync", "asyncio", "uvloop"], valkey=["sync"])
def test_a_write_by_another_process_of_the_host_is_seen_before_its_push(
        fresh_redis_server: RedisServer, mode: str) -> None:
    """Redis' push to the reader is held back 2 s by a proxy; the write moves the key's slot
    on the host page, so the reader's very next get goes to Redis instead of its copy."""
    with ChaosProxy(*fresh_redis_server.address) as proxy:
        slow = {"socket_timeout": 5.0, "connect_timeout": 5.0}
        prefix = unique("near-host")
        with Worker(proxy.url, prefix, mode, near_cache=True, **slow) as reader:
            reader.call("set", "k", "v1")

            def held() -> bool:
                hits = reader.call("stats")["target"]["near_hits"]
                return bool(reader.call("get", "k") == "v1"
                            and reader.call("stats")["target"]["near_hits"] > hits)

            eventually(held, timeout=10)
            writer = CacheService(prefix, url=proxy.url, **slow)
            proxy.latency(2.0, new=False)  # the reader's links; the writer's new one is spared
            writer.set("k", "v2")
            started = time.monotonic()
            assert reader.call("get", "k") == "v2"  # not its copy: through Redis (and the delay)
            assert time.monotonic() - started > 1.5
            proxy.heal()
            writer.close()
            reader.exit()


@on_each_server
def test_a_redis_that_refuses_tracking_is_named_once_and_bypassed(
        fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    with fresh_redis_server.client() as raw:
        raw.execute_command("ACL", "SETUSER", "untracked", "on", ">untracked-pw", "~*", "&*",
                            "+@all", "-client|tracking")
    host, port = fresh_redis_server.address
    svc = CacheService(unique("near-acl"), url=f"redis://untracked:untracked-pw@{host}:{port}/0",
                       near_cache=True, breaker_min_backoff=0.05, breaker_max_backoff=0.1)
    svc.set("k", "v")
    with caplog.at_level("WARNING", logger="cache_service"):
        eventually(lambda: svc.get("k") == "v" and svc.stats()["target"]["near_refused"],
                   timeout=5)
        time.sleep(0.3)  # several refused links: still one warning
    assert "NOPERM" in svc.stats()["target"]["near_refused"]
    warnings = [r for r in caplog.records if "near cache" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "untracked-pw" not in warnings[0].getMessage()
    assert svc.stats()["target"]["near_hits"] == 0
    assert svc.get("k") == "v"  # from Redis, every time
    svc.close()
