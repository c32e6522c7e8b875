"""Forks while another thread holds what a child would wait on (a load in flight, every lock of
the package, a recovery against a dead Redis), and per-loop asyncio clients that must not pile
up however their loops end."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cache_service import AsyncCacheService, CacheService

from .helpers import eventually, unique
from .servers import RedisServer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.2, "socket_timeout": 0.5,
        "connect_timeout": 0.5}
_LOCKS = (type(threading.Lock()), type(threading.RLock()))


def in_child(work: Callable[[], bool], timeout: float = 20.0) -> None:
    """Fork; the child runs ``work`` and exits 0 if it returned True. The parent asserts
    that exit code within ``timeout`` (a hung child is killed and fails the test)."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = 0 if work() else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung for {timeout}s")
        time.sleep(0.02)


def child_work(svc: CacheService, tag: str) -> Callable[[], bool]:
    """What a child does: its own load, write, read, delete and pattern invalidation."""
    def work() -> bool:
        loaded = svc.get_or_set(f"load-{tag}", lambda: f"child-{tag}", ttl=30)
        svc.set(f"own-{tag}", {"n": 1}, ttl=30)
        ok = loaded == f"child-{tag}" and svc.get(f"own-{tag}") == {"n": 1}
        svc.delete(f"own-{tag}")
        svc.invalidate_pattern(f"load-{tag}*")
        return ok and svc.get(f"own-{tag}") is None and svc.get(f"load-{tag}") is None
    return work


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(name="fork") as s:
        yield s


def test_a_child_forked_during_a_load_loads_on_its_own(server: RedisServer) -> None:
    svc = CacheService(unique("fork"), url=server.url, **FAST)
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(30)
        return "parent"

    loader = threading.Thread(target=lambda: svc.get_or_set("load-a", slow, ttl=30))
    loader.start()
    assert started.wait(5)
    try:
        in_child(child_work(svc, "a"))
    finally:
        release.set()
        loader.join()
    assert svc.get("load-a") == "parent"


def every_lock(*roots: object) -> list[Any]:
    """Every lock at module level in the package and in the package's objects reachable from
    ``roots`` (two levels of attributes)."""
    found: dict[int, Any] = {}

    def visit(obj: object, depth: int) -> None:
        for value in list(getattr(obj, "__dict__", {}).values()) + [
                getattr(obj, name, None) for cls in type(obj).__mro__
                for name in cls.__dict__.get("__slots__", ())]:
            if isinstance(value, _LOCKS):
                found[id(value)] = value
            elif depth and type(value).__module__.startswith("cache_service"):
                visit(value, depth - 1)

    for name, module in list(sys.modules.items()):
        if name.startswith("cache_service"):
            visit(module, 0)
    for root in roots:
        visit(root, 2)
    return list(found.values())


@pytest.mark.parametrize("mode", ["redis", "outage"])
def test_a_child_forked_while_every_lock_is_held_does_its_work(
        server: RedisServer, tmp_path: Path, mode: str) -> None:
    svc = CacheService(unique("fork"), url=server.url, state_dir=tmp_path, near_cache=True,
                       **FAST)
    svc.set("warm", 1)
    svc.get("warm")
    if mode == "outage":
        server.kill()
        svc.get("warm")
        assert svc.stats()["target"]["breaker_state"] == "open"
    locks = every_lock(svc, svc._target)
    assert len(locks) > 15
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        taken = [lock for lock in locks if lock.acquire(timeout=5)]
        holding.set()
        release.wait(30)
        for lock in taken:
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    try:
        in_child(child_work(svc, mode))
    finally:
        release.set()
        holder.join()
    svc.close()


def test_a_child_forked_during_a_recovery_gets_back_on_redis(tmp_path: Path) -> None:
    with RedisServer(name="fork-recovery") as server:
        svc = CacheService(unique("fork"), url=server.url, state_dir=tmp_path, **FAST)
        svc.set("k", "before")
        server.kill()
        svc.get("k")
        assert eventually(lambda: svc._target.recovery.running, timeout=2)

        def work() -> bool:
            ok = child_work(svc, "recovery")()  # on the fallback store
            back = eventually(svc.is_redis_available, timeout=15)
            svc.set("after", "child")
            return ok and back and svc.get("after") == "child"

        restarter = threading.Timer(0.5, server.restart)
        restarter.start()
        try:
            in_child(work, timeout=30)
        finally:
            restarter.join()
        assert eventually(svc.is_redis_available, timeout=10)
        svc.close()


def test_a_child_forked_inside_a_running_loop_gets_its_own_client(
        server: RedisServer) -> None:
    svc = AsyncCacheService(unique("fork"), url=server.url, **FAST)

    async def child() -> bool:
        gc.collect()  # nothing of the parent's may be closed from here (its epoll is shared)
        await svc.set("k", "child")
        return await svc.get_or_set("x", lambda: 5) == 5 and await svc.get("k") == "child"

    async def main() -> int:
        await svc.set("k", "parent")
        assert svc._target._aclients
        pid = os.fork()
        if pid == 0:  # asyncio leaves no loop running in a child: it runs one of its own
            code = 2
            try:
                # the client of the parent's loop was dropped at the fork, the child's own
                # closed by asyncio.run: none left
                code = 0 if asyncio.run(child()) and not svc._target._aclients else 1
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                assert code == 0
                assert await svc.get("k") == "child"
                return code
            await asyncio.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return -1

    assert asyncio.run(main()) == 0


# -- per-loop clients ------------------------------------------------------------------------

def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _new_uvloop() -> asyncio.AbstractEventLoop:
    uvloop = pytest.importorskip("uvloop")
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # asyncio's, for sockets of dead loops
@pytest.mark.parametrize("make", [asyncio.new_event_loop, _new_uvloop], ids=["asyncio", "uvloop"])
def test_clients_of_loops_closed_without_shutdown_are_dropped(
        server: RedisServer, make: Callable[[], asyncio.AbstractEventLoop]) -> None:
    svc = AsyncCacheService(unique("loops"), url=server.url, **FAST)
    asyncio.run(svc.set("k", 1))
    gc.collect()
    before = fds()
    for _ in range(200):
        loop = make()
        assert loop.run_until_complete(svc.get("k")) == 1
        loop.close()
    assert len(svc._target._aclients) <= 1
    gc.collect()  # asyncio closes a dead loop's sockets when they are collected
    assert fds() - before < 50  # a leak keeps two or more per loop: 400 and up
    with server.client() as raw:
        assert eventually(lambda: int(raw.info("clients")["connected_clients"]) < 15)


def test_clients_of_loops_run_by_asyncio_run_are_closed_at_once(server: RedisServer) -> None:
    svc = AsyncCacheService(unique("loops"), url=server.url, **FAST)
    asyncio.run(svc.set("k", 1))
    before = fds()
    for _ in range(100):
        assert asyncio.run(svc.get("k")) == 1
    assert len(svc._target._aclients) == 0
    assert fds() - before < 5
