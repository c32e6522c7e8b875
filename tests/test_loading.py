"""Loading through the cache: get_or_set, single-flight, the Redis lock, jitter, stale values.

Behaviour that must hold on every store runs over the ``svc`` fixture: sync and async
services, memory and Redis (the async one through the blocking adapter of tests/backends.py).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cache_service import AsyncCacheService, CacheService, ConfigurationError, cached
from cache_service._ops.loading import (
    SWR_MARK,
    in_flight,
    jittered,
    load_policy,
    lock_key,
)

from .backends import BACKENDS
from .helpers import FakeClock, unique
from .servers import RedisServer, free_port

KINDS = ["memory", "redis", "async-memory", "async-redis"]


class Counter:
    """A loader that counts its calls, optionally slow or failing."""

    def __init__(self, value: Any = "loaded", delay: float = 0.0,
                 error: BaseException | None = None) -> None:
        self.value = value
        self.delay = delay
        self.error = error
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Services on one store kind (sync/async x memory/Redis), cleared afterwards."""
    url, construct = BACKENDS[request.param](request)
    made: list[Any] = []

    def factory(prefix: str | None = None, **kwargs: Any) -> Any:
        svc = construct(prefix or unique(), url=url, **kwargs)
        made.append(svc)
        return svc

    yield factory
    for svc in made:
        svc.clear_all()


@pytest.fixture
def svc(make: Callable[..., Any]) -> Any:
    """One service (a blocking view of it for the async kinds)."""
    return make()


@pytest.fixture(params=["memory", "redis"])
def sync_svc(request: pytest.FixtureRequest) -> Iterator[CacheService]:
    """A blocking CacheService, for behaviour that only blocking callers have (each case has
    an asyncio twin below)."""
    url, _ = BACKENDS[request.param](request)
    svc = CacheService(unique(), url=url)
    yield svc
    svc.clear_all()


# -- get_or_set: the contract ----------------------------------------------------------------
def test_miss_loads_and_caches_then_hits(svc: Any) -> None:
    load = Counter({"id": 1})
    assert svc.get_or_set("k", load, ttl=60) == {"id": 1}
    assert svc.get_or_set("k", load) == {"id": 1}
    assert svc.get("k") == {"id": 1}
    assert load.calls == 1
    stats = svc.stats()
    assert (stats["hits"], stats["misses"], stats["sets"]) == (2, 1, 1)


@pytest.mark.parametrize("falsy", [0, "", [], {}, False, 0.0])
def test_falsy_values_are_hits(svc: Any, falsy: Any) -> None:
    load = Counter(falsy)
    for _ in range(3):
        assert svc.get_or_set("f", load) == falsy
    assert load.calls == 1


def test_none_is_cached_only_when_asked(svc: Any) -> None:
    load = Counter(None)
    svc.get_or_set("n", load)
    svc.get_or_set("n", load)
    assert load.calls == 2
    svc.get_or_set("m", load, cache_none=True)
    svc.get_or_set("m", load, cache_none=True)
    assert load.calls == 3


def test_loader_error_propagates_and_nothing_is_cached(svc: Any) -> None:
    with pytest.raises(KeyError, match="db down"):
        svc.get_or_set("k", Counter(error=KeyError("db down")))
    assert svc.get("k", "miss") == "miss"
    assert svc.get_or_set("k", Counter("ok")) == "ok"


def test_results_are_copies(svc: Any) -> None:
    first = svc.get_or_set("k", Counter({"tags": ["a"]}))
    first["tags"].append("mutated")
    assert svc.get_or_set("k", Counter()) == {"tags": ["a"]}


def test_bad_options_raise_before_loading(svc: Any) -> None:
    load = Counter()
    for kwargs in ({"ttl": 0}, {"jitter": 1.5}, {"stale_while_revalidate": -1},
                   {"lock_ttl": 0}, {"stale_if_error": float("nan")}):
        with pytest.raises(ConfigurationError):
            svc.get_or_set("k", load, **kwargs)
    assert load.calls == 0


def test_unserialisable_result_raises(svc: Any) -> None:
    with pytest.raises(TypeError, match="cannot cache"):
        svc.get_or_set("k", Counter(object()))
    assert in_flight() == 0


# -- single-flight -----------------------------------------------------------------------------
def test_concurrent_threads_run_the_loader_once(svc: Any) -> None:
    load = Counter({"v": 1}, delay=0.3)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(svc.get_or_set("k", load)))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.calls == 1
    assert results == [{"v": 1}] * 16
    assert len({id(r) for r in results}) == 16  # each caller got its own copy
    assert in_flight() == 0


def test_waiters_share_the_leaders_exception(sync_svc: CacheService) -> None:
    svc = sync_svc
    load = Counter(delay=0.3, error=RuntimeError("backend failed"))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            svc.get_or_set("k", load)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.calls == 1
    assert len(errors) == 8
    assert svc.get("k", "miss") == "miss"
    assert in_flight() == 0


def test_async_waiters_share_the_leaders_exception() -> None:
    calls = 0

    async def load() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        raise RuntimeError("backend failed")

    async def main() -> None:
        cache = AsyncCacheService(unique(), url=f"memory://{unique()}")
        results = await asyncio.gather(*(cache.get_or_set("k", load) for _ in range(20)),
                                       return_exceptions=True)
        assert calls == 1
        assert all(isinstance(r, RuntimeError) for r in results)
        assert await cache.get("k", "miss") == "miss"

    asyncio.run(main())
    assert in_flight() == 0


def test_async_tasks_run_the_loader_once(redis_server: RedisServer) -> None:
    calls = 0

    async def load() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return {"v": 1}

    async def main() -> None:
        cache = AsyncCacheService(unique(), url=redis_server.url)
        results = await asyncio.gather(*(cache.get_or_set("k", load) for _ in range(100)))
        assert calls == 1
        assert all(r == {"v": 1} for r in results)
        assert len({id(r) for r in results}) == 100
        assert await cache.get_or_set("k", load) == {"v": 1}
        assert calls == 1
        await cache.clear_all()
        await cache.aclose()

    asyncio.run(main())
    assert in_flight() == 0


def test_threads_and_tasks_on_several_loops_share_one_load(redis_server: RedisServer) -> None:
    prefix = unique()
    load = Counter("shared", delay=0.4)
    sync = CacheService(prefix, url=redis_server.url)
    results: list[Any] = []

    async def tasks() -> None:
        cache = AsyncCacheService(prefix, url=redis_server.url)
        results.extend(await asyncio.gather(*(cache.get_or_set("k", load) for _ in range(10))))
        await cache.aclose()

    leader = threading.Thread(target=lambda: results.append(sync.get_or_set("k", load)))
    leader.start()
    time.sleep(0.1)
    others = [threading.Thread(target=asyncio.run, args=(tasks(),)) for _ in range(2)]
    others += [threading.Thread(target=lambda: results.append(sync.get_or_set("k", load)))]
    for t in others:
        t.start()
    for t in [leader, *others]:
        t.join()
    assert load.calls == 1
    assert results == ["shared"] * 22
    sync.clear_all()


def test_cancelled_leader_hands_over_to_a_waiter(redis_server: RedisServer) -> None:
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)
        return f"load {calls}"

    async def main() -> None:
        cache = AsyncCacheService(unique(), url=redis_server.url)
        leader = asyncio.ensure_future(cache.get_or_set("k", load))
        await asyncio.sleep(0.05)
        waiters = [asyncio.ensure_future(cache.get_or_set("k", load)) for _ in range(5)]
        await asyncio.sleep(0.05)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert await asyncio.gather(*waiters) == ["load 2"] * 5
        assert calls == 2
        await cache.clear_all()
        await cache.aclose()

    asyncio.run(main())
    assert in_flight() == 0


def test_cancelled_waiter_does_not_disturb_the_load(redis_server: RedisServer) -> None:
    load_started = 0
    started: asyncio.Event

    async def load() -> str:
        nonlocal load_started
        load_started += 1
        started.set()
        await asyncio.sleep(0.5)
        return "v"

    async def main() -> None:
        nonlocal started
        started = asyncio.Event()
        cache = AsyncCacheService(unique(), url=redis_server.url)
        leader = asyncio.ensure_future(cache.get_or_set("k", load))
        await asyncio.wait_for(started.wait(), 5)  # the leader is loading (no fixed sleep)
        waiter = asyncio.ensure_future(cache.get_or_set("k", load))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # it waits for the leader's load
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await leader == "v"
        assert load_started == 1
        await cache.clear_all()
        await cache.aclose()

    asyncio.run(main())


def test_loader_asking_for_its_own_key_does_not_deadlock(sync_svc: CacheService) -> None:
    svc = sync_svc
    depth = 0

    def load() -> int:
        nonlocal depth
        depth += 1
        if depth < 3:
            return int(svc.get_or_set("k", load)) + 1
        return 0

    assert svc.get_or_set("k", load) == 2


def test_async_loader_asking_for_its_own_key_does_not_deadlock() -> None:
    async def main() -> None:
        cache = AsyncCacheService(unique(), url=f"memory://{unique()}")

        async def load() -> int:
            inner = await cache.get_or_set("other", lambda: 41)
            return int(inner) + 1 if await cache.get("k") is None else -1

        async def outer() -> int:
            return int(await cache.get_or_set("k", load))

        assert await asyncio.wait_for(outer(), 5) == 42

    asyncio.run(main())


def test_blocking_call_inside_a_leading_task_does_not_deadlock() -> None:
    """A sync get_or_set made from a loop whose task leads the same key loads by itself
    (waiting would block the very loop the leader needs)."""
    url = f"memory://{unique()}"
    prefix = unique()

    async def main() -> None:
        cache = AsyncCacheService(prefix, url=url)
        sync = CacheService(prefix, url=url)

        async def load() -> str:
            return str(sync.get_or_set("k", lambda: "inner")) + "+outer"

        assert await cache.get_or_set("k", load) == "inner+outer"

    asyncio.run(main())


def test_sync_service_refuses_an_async_loader_clearly(sync_svc: CacheService) -> None:
    svc = sync_svc

    async def load() -> int:
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        with pytest.raises(TypeError, match="cannot await it"):
            svc.get_or_set("k", load)
    assert svc.get("k") is None


def test_async_service_accepts_sync_and_async_loaders() -> None:
    async def load() -> int:
        return 2

    async def main() -> None:
        cache = AsyncCacheService(unique(), url=f"memory://{unique()}")
        assert await cache.get_or_set("a", lambda: 1) == 1
        assert await cache.get_or_set("b", load) == 2

    asyncio.run(main())


# -- jitter --------------------------------------------------------------------------------------
def test_jittered_never_lengthens() -> None:
    assert jittered(100, 0) == 100
    assert jittered(100, 0.2, rand=lambda: 0.0) == 100
    assert jittered(100, 0.2, rand=lambda: 1.0) == pytest.approx(80)


def test_jitter_spreads_expiry(redis_server: RedisServer) -> None:
    cache = CacheService(unique(), url=redis_server.url)
    for i in range(40):
        cache.get_or_set(f"k{i}", lambda: 1, ttl=100, jitter=0.3)
    with redis_server.client() as raw:
        ttls = [raw.pttl(cache.full_key(f"k{i}")) for i in range(40)]
    assert all(70_000 - 50 <= t <= 100_000 for t in ttls)
    assert max(ttls) - min(ttls) > 3_000
    cache.clear_all()


# -- stale-while-revalidate ------------------------------------------------------------------------
@pytest.fixture(params=["memory", "redis"])
def clocked(request: pytest.FixtureRequest) -> tuple[Any, FakeClock]:
    """A sync service on a fake clock (wall clock of SWR, memory TTLs); Redis TTLs are real
    but long enough for the test."""
    clock = FakeClock()
    url = f"memory://{unique()}" if request.param == "memory" else \
        request.getfixturevalue("redis_server").url
    return CacheService(unique(), url=url, clock=clock, wall_clock=clock), clock


def test_plain_get_sees_a_swr_value_only_while_fresh(clocked: tuple[Any, FakeClock]) -> None:
    cache, clock = clocked
    cache.get_or_set("k", lambda: "v", ttl=10, stale_while_revalidate=30)
    assert cache.get("k") == "v"
    clock.advance(11)
    assert cache.get("k", "miss") == "miss"


def test_stale_value_served_while_one_caller_refreshes(clocked: tuple[Any, FakeClock]) -> None:
    cache, clock = clocked
    cache.get_or_set("k", lambda: "old", ttl=10, stale_while_revalidate=30)
    clock.advance(15)
    release = threading.Event()
    load = Counter("new")

    def slow() -> Any:
        release.wait(5)
        return load()

    refresher = threading.Thread(
        target=lambda: results.append(cache.get_or_set("k", slow, ttl=10,
                                                       stale_while_revalidate=30)))
    results: list[Any] = []
    refresher.start()
    time.sleep(0.1)
    start = time.perf_counter()
    assert cache.get_or_set("k", slow, ttl=10, stale_while_revalidate=30) == "old"
    assert time.perf_counter() - start < 0.5  # served at once, not after the refresh
    release.set()
    refresher.join()
    assert results == ["new"]
    assert load.calls == 1
    assert cache.get("k") == "new"


def test_past_the_grace_callers_wait_for_the_refresh(clocked: tuple[Any, FakeClock]) -> None:
    cache, clock = clocked
    cache.get_or_set("k", lambda: "old", ttl=10, stale_while_revalidate=5, stale_if_error=60)
    clock.advance(20)  # beyond the 5 s grace, within the 60 s error bound
    assert cache.get_or_set("k", lambda: "new", ttl=10, stale_while_revalidate=5,
                            stale_if_error=60) == "new"


def test_stale_if_error_serves_the_old_value_within_its_bound(
        clocked: tuple[Any, FakeClock], caplog: pytest.LogCaptureFixture) -> None:
    cache, clock = clocked
    opts = {"ttl": 10, "stale_while_revalidate": 5, "stale_if_error": 60}
    cache.get_or_set("k", lambda: "old", **opts)
    clock.advance(30)
    failing = Counter(error=ConnectionError("db down"))
    assert cache.get_or_set("k", failing, **opts) == "old"
    assert any("serving the value" in r.getMessage() for r in caplog.records)
    clock.advance(45)  # 65 s past expiry: beyond stale_if_error
    with pytest.raises(ConnectionError):
        cache.get_or_set("k", failing, **opts)


def test_invalidated_value_is_never_served_stale(clocked: tuple[Any, FakeClock]) -> None:
    cache, clock = clocked
    opts = {"ttl": 10, "stale_while_revalidate": 30}
    cache.get_or_set("k", lambda: "old", **opts)
    clock.advance(15)
    cache.delete("k")
    with pytest.raises(ConnectionError):
        cache.get_or_set("k", Counter(error=ConnectionError("db down")), **opts)


def test_envelope_cannot_be_forged_by_stored_data(svc: Any) -> None:
    forged = [SWR_MARK, 1, 9e18, "inner"]
    svc.set("k", forged)
    assert svc.get("k") == forged
    assert svc.get_or_set("k", Counter(), stale_while_revalidate=10) == forged


def test_swr_value_keeps_its_exact_type(svc: Any) -> None:
    value = {"t": (1, 2), "s": {3}}
    assert svc.get_or_set("k", lambda: value, stale_while_revalidate=10) == value
    assert svc.get("k") == value
    assert svc.get_or_set("k", Counter(), stale_while_revalidate=10) == value


# -- the cross-process lock ------------------------------------------------------------------------
def _two_processes(url: str, prefix: str) -> tuple[CacheService, CacheService]:
    """Two services whose targets differ (127.0.0.1 vs localhost): like two processes, their
    single-flight guards are separate, only the Redis lock is shared."""
    one = CacheService(prefix, url=url)
    two = CacheService(prefix, url=url.replace("127.0.0.1", "localhost"))
    assert one._target is not two._target
    return one, two


def test_lock_makes_another_process_wait_for_the_load(redis_server: RedisServer) -> None:
    one, two = _two_processes(redis_server.url, unique())
    load = Counter("v", delay=0.4)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda s=s: results.append(  # type: ignore[misc]
        s.get_or_set("k", load, lock=True))) for s in (one, two, one, two)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert load.calls == 1
    assert results == ["v"] * 4
    with redis_server.client() as raw:
        assert raw.exists(lock_key(one.prefix, "k")) == 0  # released
    one.clear_all()


def test_without_the_lock_each_process_loads(redis_server: RedisServer) -> None:
    one, two = _two_processes(redis_server.url, unique())
    load = Counter("v", delay=0.3)
    threads = [threading.Thread(target=s.get_or_set, args=("k", load)) for s in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.calls == 2
    one.clear_all()


def test_lock_lives_outside_every_prefix(redis_server: RedisServer) -> None:
    cache = CacheService(unique(), url=redis_server.url)
    seen: list[Any] = []

    def load() -> str:
        with redis_server.client() as raw:
            name = lock_key(cache.prefix, "k")
            seen.append((name, raw.exists(name), raw.pttl(name)))
            assert cache.invalidate_pattern("*") == 0
            assert cache.clear_all() == 0
            assert raw.exists(name) == 1
        return "v"

    cache.get_or_set("k", load, lock=True, lock_ttl=7)
    (name, exists, pttl), = seen
    assert name == f"cs::lock:{cache.prefix}::k"
    assert exists == 1
    assert 0 < pttl <= 7000
    assert not any(name.startswith(f"cs:{p}::") for p in (cache.prefix, "cs", "lock"))
    cache.clear_all()


def test_lock_released_when_the_loader_fails(redis_server: RedisServer) -> None:
    cache = CacheService(unique(), url=redis_server.url)
    with pytest.raises(ValueError, match="boom"):
        cache.get_or_set("k", Counter(error=ValueError("boom")), lock=True)
    with redis_server.client() as raw:
        assert raw.exists(lock_key(cache.prefix, "k")) == 0


def test_lock_released_when_the_loading_task_is_cancelled(redis_server: RedisServer) -> None:
    async def main() -> None:
        cache = AsyncCacheService(unique(), url=redis_server.url)

        async def load() -> str:
            await asyncio.sleep(5)
            return "never"

        task = asyncio.ensure_future(cache.get_or_set("k", load, lock=True))
        await asyncio.sleep(0.1)
        with redis_server.client() as raw:
            assert raw.exists(lock_key(cache.prefix, "k")) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert raw.exists(lock_key(cache.prefix, "k")) == 0
        assert in_flight() == 0
        await cache.aclose()

    asyncio.run(main())


def test_lock_only_releases_its_own_token(redis_server: RedisServer) -> None:
    cache = CacheService(unique(), url=redis_server.url)
    name = lock_key(cache.prefix, "k")

    def load() -> str:  # our lock expired and someone else took it meanwhile
        with redis_server.client() as raw:
            raw.set(name, "someone else", px=5000)
        return "v"

    cache.get_or_set("k", load, lock=True)
    with redis_server.client() as raw:
        assert raw.get(name) == b"someone else"
        raw.delete(name)


def test_lock_wait_is_bounded(redis_server: RedisServer) -> None:
    cache = CacheService(unique(), url=redis_server.url)
    with redis_server.client() as raw:
        raw.set(lock_key(cache.prefix, "k"), "a crashed holder", px=10_000)
        start = time.perf_counter()
        assert cache.get_or_set("k", Counter("v"), lock=True, lock_wait=0.3) == "v"
        assert 0.25 < time.perf_counter() - start < 2.0
        raw.delete(lock_key(cache.prefix, "k"))


def test_stale_value_served_while_another_process_holds_the_lock(
        redis_server: RedisServer) -> None:
    clock = FakeClock()
    cache = CacheService(unique(), url=redis_server.url, wall_clock=clock)
    opts: dict[str, Any] = {"ttl": 10, "stale_while_revalidate": 30, "lock": True}
    cache.get_or_set("k", lambda: "old", **opts)
    clock.advance(15)
    with redis_server.client() as raw:
        raw.set(lock_key(cache.prefix, "k"), "another process", px=10_000)
        start = time.perf_counter()
        assert cache.get_or_set("k", Counter("new"), **opts) == "old"
        assert time.perf_counter() - start < 0.5
        raw.delete(lock_key(cache.prefix, "k"))


def test_lock_degrades_to_the_process_guard_when_redis_is_down() -> None:
    cache = CacheService(unique(), url=f"redis://127.0.0.1:{free_port()}/0",
                         breaker_min_backoff=5.0, breaker_max_backoff=5.0)
    cache.get("warm")  # the breaker opens: Redis is known to be out
    load = Counter("v", delay=0.2)
    threads = [threading.Thread(target=cache.get_or_set, args=("k", load),
                                kwargs={"lock": True}) for _ in range(8)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.calls == 1
    assert time.perf_counter() - start < 2.0
    assert cache.get("k") == "v"


def _process_main(url: str, prefix: str, start_at: float, out: Any) -> None:
    cache = CacheService(prefix, url=url)

    def load() -> str:
        with RedisCounter(url) as counter:
            counter.incr(f"{prefix}:loads")
        time.sleep(0.5)
        return "v"

    time.sleep(max(0.0, start_at - time.time()))
    out.put(cache.get_or_set("k", load, lock=True))


class RedisCounter:
    """A raw client for counting loads across processes."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def __enter__(self) -> Any:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()


@pytest.mark.slow
def test_lock_across_real_processes(redis_server: RedisServer) -> None:
    prefix = unique()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 2.0  # after every child has imported
    procs = [ctx.Process(target=_process_main, args=(redis_server.url, prefix, start_at, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert results == ["v"] * 4
    with redis_server.client() as raw:
        assert int(raw.get(f"{prefix}:loads") or 0) == 1
        raw.delete(f"{prefix}:loads")
    CacheService(prefix, url=redis_server.url).clear_all()
    out.close()
    out.join_thread()


# -- @cached through get_or_set -------------------------------------------------------------------
def test_cached_async_awaits_and_caches_the_result(redis_server: RedisServer) -> None:
    calls = 0

    @cached(ttl=60, cache=AsyncCacheService(unique(), url=redis_server.url))
    async def fetch(user_id: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return {"id": user_id}

    async def main() -> None:
        results = await asyncio.gather(*(fetch(7) for _ in range(50)))
        assert results == [{"id": 7}] * 50
        assert calls == 1
        assert await fetch.cache.get(fetch.cache_key(7)) == {"id": 7}
        assert await fetch.ainvalidate(7) == 1
        assert await fetch(7) == {"id": 7}
        assert calls == 2
        await fetch.ainvalidate()
        await fetch.cache.aclose()

    asyncio.run(main())


def test_cached_sync_runs_once_across_threads() -> None:
    load = Counter(delay=0.2)

    @cached(cache=CacheService(unique(), url=f"memory://{unique()}"))
    def fetch(x: int) -> Any:
        return load()

    threads = [threading.Thread(target=fetch, args=(1,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.calls == 1


def test_cached_misuse_fails_at_decoration_time() -> None:
    async def coroutine_function(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="did you write @cached instead of @cached"):
        cached(coroutine_function)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_func"):
        cached(key_func=coroutine_function, prefix=unique())  # type: ignore[arg-type]


def test_cached_sync_function_returning_a_coroutine_fails_clearly() -> None:
    async def inner() -> int:
        return 1

    @cached(prefix=unique(), url=f"memory://{unique()}")
    def looks_sync() -> Any:
        return inner()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="looks_sync returned an awaitable"):
            looks_sync()


def test_cached_passes_loading_options(redis_server: RedisServer) -> None:
    cache = CacheService(unique(), url=redis_server.url)

    @cached(ttl=100, jitter=0.5, lock=True, cache=cache)
    def fetch(x: int) -> int:
        return x

    fetch(1)
    with redis_server.client() as raw:
        assert 50_000 - 50 <= raw.pttl(cache.full_key(fetch.cache_key(1))) <= 100_000
    fetch.invalidate()


def test_policy_objects_are_shared() -> None:
    assert load_policy(jitter=0.1) is load_policy(jitter=0.1)
    assert load_policy(stale_while_revalidate=5).keep_stale == 5
    assert load_policy(stale_while_revalidate=5, stale_if_error=60).keep_stale == 60


def test_no_flight_left_behind() -> None:
    assert in_flight() == 0  # the in-flight map only ever holds keys being loaded


def test_get_or_set_when_redis_dies_unnoticed(fresh_redis_server: RedisServer) -> None:
    """The first request of the flow fails (breaker still closed): the flow falls back to
    the memory store, loads once and returns the value; later calls hit memory."""
    sync = CacheService(unique(), url=fresh_redis_server.url, breaker_min_backoff=5.0,
                        breaker_max_backoff=5.0)
    sync.set("warm", 1)
    fresh_redis_server.kill()
    load = Counter("v")
    assert sync.get_or_set("k", load, lock=True) == "v"
    assert sync.get_or_set("k", load, lock=True) == "v"
    assert load.calls == 1
    assert sync.stats()["target"]["breaker_state"] == "open"

    async def main() -> None:
        # another target (so its breaker is still closed): the asyncio interpreter's turn
        cache = AsyncCacheService(unique(),
                                  url=fresh_redis_server.url.replace("127.0.0.1", "localhost"))
        assert cache._target is not sync._target
        assert await cache.get_or_set("k", lambda: "w") == "w"
        assert await cache.get_or_set("k", load) == "w"
        await cache.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_cached_attaches_tags_static_or_from_the_arguments(
        kind: str, request: pytest.FixtureRequest) -> None:
    url = f"memory://{unique()}" if kind == "memory" else \
        request.getfixturevalue("redis_server").url
    svc = CacheService(unique(), url=url)
    calls: list[str] = []

    @cached(cache=svc, tags=lambda user_id, part: [f"user:{user_id}", part])
    def fetch(user_id: int, part: str) -> str:
        calls.append(f"{user_id}/{part}")
        return f"{user_id}/{part}:{len(calls)}"

    @cached(cache=svc, tags=["catalogue"])
    def listing(page: int) -> list[int]:
        calls.append(f"page {page}")
        return [page]

    assert [fetch(1, "a"), fetch(1, "b"), fetch(2, "a"), fetch(1, "a")] == [
        "1/a:1", "1/b:2", "2/a:3", "1/a:1"]
    assert listing(1) == listing(1) == [1]
    svc.invalidate_tags("user:1")
    assert fetch(1, "a") == "1/a:5"
    assert fetch(2, "a") == "2/a:3"
    svc.invalidate_tags("a", "catalogue")
    assert (fetch(2, "a"), fetch(1, "b"), listing(1)) == ("2/a:6", "1/b:7", [1])
    assert calls[-1] == "page 1"
    with pytest.raises(ConfigurationError, match="tags"):
        cached(cache=svc, tags=[""])
    svc.clear_all()


def test_cached_async_with_tags(redis_server: RedisServer) -> None:
    svc = AsyncCacheService(unique(), url=redis_server.url)
    calls = 0

    @cached(cache=svc, tags=lambda uid: [f"user:{uid}"])
    async def fetch(uid: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"uid": uid, "n": calls}

    async def main() -> None:
        assert await fetch(1) == await fetch(1) == {"uid": 1, "n": 1}
        await svc.invalidate_tags("user:1")
        assert await fetch(1) == {"uid": 1, "n": 2}
        await svc.clear_all()
        await svc.aclose()

    asyncio.run(main())
