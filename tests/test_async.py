"""AsyncCacheService: parity with CacheService, per-loop clients, cancellation safety.

The behaviour contract itself runs over AsyncCacheService in test_contract.py (the
"async-memory" and "async-redis" kinds of tests/backends.py); this module covers what only
the asyncio twin has.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis.exceptions
import uvloop

from cache_service import AsyncCacheService, CacheService, aio
from cache_service._ops.requests import Command
from cache_service._runtime.target import Target

from .helpers import import_offline, unique
from .servers import ChaosProxy, RedisServer, free_port

T = TypeVar("T")
FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.2}


LOOP = {"kind": "asyncio"}


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def event_loop_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on asyncio's default loop and on uvloop (uvicorn[standard]'s)."""
    LOOP["kind"] = request.param
    yield request.param
    LOOP["kind"] = "asyncio"


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on a fresh loop of this test's kind, shut down (clients closed) at the
    end."""
    if LOOP["kind"] == "uvloop":
        return uvloop.run(main())
    return asyncio.run(main())


# -- the same API, awaited ---------------------------------------------------------------------
def test_every_public_method_of_the_sync_service_exists_awaitable() -> None:
    public = {n for n in dir(CacheService) if not n.startswith("_")}
    for name in public - {"close", "prefix", "default_ttl", "location", "full_key"}:
        method = getattr(AsyncCacheService, name)
        assert inspect.iscoroutinefunction(method), name
        sync_params = list(inspect.signature(getattr(CacheService, name)).parameters)
        assert list(inspect.signature(method).parameters) == sync_params, name
    assert inspect.signature(AsyncCacheService.__init__) == inspect.signature(
        CacheService.__init__)
    assert inspect.iscoroutinefunction(AsyncCacheService.aclose)


def test_async_global_instances_match_the_sync_ones() -> None:
    assert [(c.prefix, c.default_ttl) for c in (aio.api_cache, aio.user_cache,
                                                 aio.session_cache)] == [
        ("api", 300), ("user", 600), ("session", 1800)]
    from cache_service import api_cache

    assert aio.api_cache._target is api_cache._target  # one target per location


def test_importing_aio_touches_no_network() -> None:
    out = import_offline("from cache_service.aio import AsyncCacheService, api_cache, user_cache")
    assert out.stdout.strip() == "ok", out.stderr


def test_sync_and_async_services_share_data_and_target(redis_server: RedisServer) -> None:
    prefix = unique()
    sync = CacheService(prefix, url=redis_server.url)
    sync.set("k", {"from": "sync"})

    async def main() -> None:
        async with AsyncCacheService(prefix, url=redis_server.url) as cache:
            assert cache._target is sync._target
            assert await cache.get("k") == {"from": "sync"}
            await cache.set("k", ("from", "async"))
            stats = await cache.stats()
            assert (stats["hits"], stats["sets"]) == (1, 1)

    run(main)
    assert sync.get("k") == ("from", "async")
    sync.clear_all()


def test_outage_seen_by_sync_is_known_to_async(fresh_redis_server: RedisServer) -> None:
    prefix = unique()
    sync = CacheService(prefix, url=fresh_redis_server.url, **FAST)
    sync.set("k", 1)
    fresh_redis_server.kill()
    sync.set("k", "written during the outage")

    async def main() -> None:
        cache = AsyncCacheService(prefix, url=fresh_redis_server.url, **FAST)
        start = time.perf_counter()
        assert await cache.get("k") == "written during the outage"
        assert time.perf_counter() - start < 0.05  # the breaker is already open: no connect
        assert await cache.is_redis_available() is False
        await cache.aclose()

    run(main)


# -- per-loop clients, closed ----------------------------------------------------------------
def test_each_loop_gets_its_own_client(redis_server: RedisServer) -> None:
    cache = AsyncCacheService(unique(), url=redis_server.url)
    clients: list[Any] = []

    async def main(n: int) -> None:
        await cache.set(f"k{n}", n)
        assert await cache.get(f"k{n}") == n
        clients.append(cache._target._async_client())  # kept alive: ids stay distinct
        await cache.aclose()

    threads = [threading.Thread(target=asyncio.run, args=(main(n),)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in clients}) == 3
    run(lambda: main(9))  # and once more on this thread
    CacheService(cache.prefix, url=redis_server.url).clear_all()


def test_loop_end_closes_clients_left_open(redis_server: RedisServer) -> None:
    """No aclose(): asyncio.run's shutdown closes the per-loop client, no ResourceWarning."""
    code = (
        "import asyncio, gc\n"
        "from cache_service.aio import AsyncCacheService\n"
        f"cache = AsyncCacheService('leak', url={redis_server.url!r})\n"
        "async def main(n):\n"
        "    await asyncio.gather(*(cache.set(f'k{i}', i) for i in range(20)))\n"
        "    assert await cache.get('k3') == 3\n"
        "for n in range(3):\n"
        "    asyncio.run(main(n))\n"
        "gc.collect()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-X", "dev", "-W", "error", "-c", code],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.strip() == "ok", out.stderr
    assert "unclosed" not in out.stderr.lower(), out.stderr
    CacheService("leak", url=redis_server.url).clear_all()


def test_finished_loops_are_not_retained(redis_server: RedisServer) -> None:
    cache = AsyncCacheService(unique(), url=redis_server.url)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await cache.set("k", 1)
        assert await cache.get("k") == 1

    run(main)
    run(main)
    gc.collect()
    assert [ref() for ref in loops] == [None, None]
    CacheService(cache.prefix, url=redis_server.url).clear_all()


# -- cancellation ------------------------------------------------------------------------------
def _stall(server: RedisServer, how: str) -> Callable[[], None]:
    """Make ``server`` stop answering for ~0.6 s; returns the function that ends it."""
    if how == "sigstop":
        server.freeze()
        return server.thaw
    raw = server.client()
    sleeper = threading.Thread(target=raw.execute_command, args=("DEBUG", "SLEEP", "0.6"))
    sleeper.start()
    # until DEBUG SLEEP runs (a loaded machine may start the thread late): a PING times out
    with server.client(socket_timeout=0.05) as probe:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                probe.ping()
            except redis.exceptions.TimeoutError:
                break
            time.sleep(0.005)

    def end() -> None:
        sleeper.join()
        raw.close()

    return end


OPS: dict[str, Callable[[AsyncCacheService], Awaitable[Any]]] = {
    "get": lambda c: c.get("a"),
    "set": lambda c: c.set("a", "new"),
    "invalidate_pattern": lambda c: c.invalidate_pattern("nothing:*"),
}


@pytest.mark.parametrize("how", ["debug-sleep", "sigstop"])
@pytest.mark.parametrize("op", list(OPS))
def test_cancelled_command_leaves_no_unread_reply(fresh_redis_server: RedisServer, how: str,
                                                   op: str) -> None:
    """A command cancelled while its reply is pending: the connection is dropped, not reused
    with that reply unread (which would hand it to the next command)."""

    async def main() -> None:
        # one connection, long timeouts: the cancel lands first, and reuse would be certain
        cache = AsyncCacheService(unique(), url=fresh_redis_server.url, socket_timeout=3.0,
                                  max_connections=1)
        await cache.set("a", "A")
        await cache.set("b", "B")
        end = _stall(fresh_redis_server, how)
        try:
            task = asyncio.ensure_future(OPS[op](cache))
            await asyncio.sleep(0.1)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            end()
        for _ in range(3):
            assert await cache.get("b") == "B"
            assert await cache.get("a") in ("A", "new")
            assert await cache.delete("nothing") == 0
        stats = await cache.stats()
        assert stats["target"]["breaker_state"] == "closed"  # a cancel is not an outage
        await cache.aclose()

    run(main)


def test_timeout_via_wait_for_is_a_cancellation_too(fresh_redis_server: RedisServer) -> None:
    async def main() -> None:
        cache = AsyncCacheService(unique(), url=fresh_redis_server.url, socket_timeout=3.0,
                                  max_connections=1)
        await cache.set("a", "A")
        await cache.set("b", "B")
        end = _stall(fresh_redis_server, "debug-sleep")
        try:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(cache.get("a"), 0.1)
        finally:
            end()
        assert await cache.get("b") == "B"
        await cache.aclose()

    run(main)


def test_arun_closes_the_operation_when_cancelled(redis_server: RedisServer) -> None:
    """The driver closes the op in ``finally``: its cleanup runs even when cancelled."""
    cleaned: list[str] = []

    def op() -> Any:
        try:
            yield Command(("DEBUG", "SLEEP", "0.3"))
        finally:
            cleaned.append("closed")

    async def main() -> None:
        target = CacheService(unique(), url=redis_server.url, socket_timeout=2.0)._target
        task = asyncio.ensure_future(target.arun(op()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == ["closed"]
        await asyncio.sleep(0.4)  # let the server wake before the loop (and client) close
        await target.aclose()

    run(main)


def test_recovery_runs_in_the_background_and_never_on_a_caller(
        fresh_redis_server: RedisServer) -> None:
    """While the server is stalled the recoverer waits on it, not a caller: calls are served
    by the fallback at once, and the breaker closes with no caller at all."""

    async def main() -> None:
        cache = AsyncCacheService(unique(), url=fresh_redis_server.url, socket_timeout=3.0,
                                  **FAST)
        target: Target = cache._target
        await cache.set("k", "v")
        target.failed(ConnectionError("simulated outage"))  # opens the breaker
        end = _stall(fresh_redis_server, "debug-sleep")
        try:
            await asyncio.sleep(0.1)  # past the backoff: the recoverer's PING waits
            start = time.perf_counter()
            assert await cache.get("k") is None  # the fallback, which never saw "k"
            assert time.perf_counter() - start < 0.1
            assert target.breaker.is_open
        finally:
            end()
        for _ in range(100):
            if not target.breaker.is_open:
                break
            await asyncio.sleep(0.05)
        assert target.breaker.state == "closed"
        assert await cache.get("k") == "v"  # served by Redis again
        await cache.aclose()

    run(main)


def test_frozen_server_bounds_each_await(fresh_redis_server: RedisServer) -> None:
    async def main() -> None:
        cache = AsyncCacheService(unique(), url=fresh_redis_server.url, socket_timeout=0.2,
                                  connect_timeout=0.2, breaker_min_backoff=0.3,
                                  breaker_max_backoff=0.3)
        await cache.set("k", "v")
        fresh_redis_server.freeze()
        try:
            start = time.perf_counter()
            await cache.get("k")
            assert time.perf_counter() - start < 1.0
            start = time.perf_counter()
            await asyncio.gather(*(cache.get("k") for _ in range(200)))
            assert time.perf_counter() - start < 1.0
            assert (await cache.stats())["target"]["breaker_state"] != "closed"
        finally:
            fresh_redis_server.thaw()
        for _ in range(100):
            if await cache.is_redis_available():
                break
            await asyncio.sleep(0.05)
        assert await cache.get("k") == "v"
        await cache.aclose()

    run(main)


def test_down_at_start_then_up() -> None:
    port = free_port()

    async def main() -> None:
        cache = AsyncCacheService(unique(), url=f"redis://127.0.0.1:{port}/0", **FAST)
        await cache.set("k", "memory")
        assert await cache.get("k") == "memory"
        assert await cache.is_redis_available() is False
        with RedisServer(port=port):
            for _ in range(100):
                if await cache.is_redis_available():
                    break
                await asyncio.sleep(0.05)
            assert await cache.get("k") is None
            await cache.set("k", "redis")
            assert await cache.get("k") == "redis"
            await cache.aclose()

    run(main)


# -- outages under both loops ----------------------------------------------------------------
ASYNC_ACTIONS: dict[str, Callable[[AsyncCacheService], Awaitable[Any]]] = {
    "delete": lambda s: s.delete("user:1"),
    "overwrite": lambda s: s.set("user:1", "new"),
    "pattern": lambda s: s.invalidate_pattern("user:*"),
    "clear_all": lambda s: s.clear_all(),
}


@pytest.mark.parametrize("mode", ["cut", "hang"])
@pytest.mark.parametrize("action", list(ASYNC_ACTIONS))
def test_no_stale_read_after_invalidating_during_outage(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer, mode: str,
        action: str) -> None:
    """The chaos suite's core case, awaited, on asyncio's loop and on uvloop."""

    async def main() -> None:
        svc = AsyncCacheService(unique(), url=chaos_proxy.url, socket_timeout=0.15,
                                connect_timeout=0.15, **FAST)
        await svc.set("user:1", "old")
        await svc.set("user:2", "old")
        chaos_proxy.cut() if mode == "cut" else chaos_proxy.hang()
        await ASYNC_ACTIONS[action](svc)
        assert await svc.get("user:1") != "old"
        raw = fresh_redis_server.client()
        assert raw.exists(svc.full_key("user:1")) == 1
        chaos_proxy.heal()
        for _ in range(100):
            assert await svc.get("user:1") != "old"
            if await svc.is_redis_available():
                break
            await asyncio.sleep(0.03)
        assert await svc.is_redis_available()
        assert await svc.get("user:1") is None
        assert raw.exists(svc.full_key("user:1")) == 0
        stats = (await svc.stats())["target"]
        assert (stats["journal_size"], stats["breaker_state"]) == (0, "closed")
        await svc.aclose()

    run(main)
