"""Loading under pressure: soft_timeout, hard_timeout, eager_refresh, Loaded, and the bounded
background runner behind them; sync and async, threads and tasks, through outages.

Loaders here block on an event the test releases (no sleeping for a load to "take long");
time bounds are generous sanity checks, the figures are the benchmark's
(benchmarks/bench_loading.py).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cache_service import (
    AsyncCacheService,
    CacheError,
    CacheService,
    ConfigurationError,
    Loaded,
    LoadTimeout,
    cached,
)
from cache_service._ops.loading import Flight, Outcome, in_flight, load_policy
from cache_service._runtime.background import RUNNER

from .helpers import FakeClock, unique
from .servers import RedisServer

SLOW = 0.05  # a deadline the blocked loaders always pass
BOUND = 2.0  # "returned at once": far below the loaders' blocking, whatever the load


class Gate:
    """A loader (sync, or async with ``.coro``) that blocks until ``open()``, counts its calls
    and then returns ``value`` (or raises ``error``)."""

    def __init__(self, value: Any = "new", error: BaseException | None = None,
                 blocked: bool = True) -> None:
        self.value = value
        self.error = error
        self.calls = 0
        self.threads: list[int] = []
        self._open = threading.Event()
        if not blocked:
            self._open.set()

    def open(self) -> None:
        self._open.set()

    def _done(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    def __call__(self) -> Any:
        self.calls += 1
        self.threads.append(threading.get_ident())
        assert self._open.wait(20), "the test never opened the gate"
        return self._done()

    async def coro(self) -> Any:
        self.calls += 1
        while not self._open.is_set():
            await asyncio.sleep(0.005)
        return self._done()


def drain(timeout: float = 20.0) -> None:
    """Wait until no background load runs in this process."""
    deadline = time.monotonic() + timeout
    while RUNNER.running or in_flight():
        assert time.monotonic() < deadline, "background loads never finished"
        time.sleep(0.005)


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return f"memory://{unique()}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
def clocked(url: str) -> Iterator[tuple[CacheService, FakeClock]]:
    """A service whose wall clock (freshness) the test moves; Redis TTLs stay real."""
    clock = FakeClock(time.time())
    svc = start_counting(CacheService(unique(), url=url, wall_clock=clock))
    yield svc, clock
    drain()
    svc.clear_all()


def stale_value(svc: CacheService, clock: FakeClock, key: str = "k") -> None:
    """Leave ``key`` holding "old", expired 1 s ago, kept as fail-safe data for an hour."""
    assert svc.get_or_set(key, lambda: "old", ttl=10, stale_if_error=3600) == "old"
    clock.now += 11


FIGURES = ("background_loads", "background_errors", "background_refused", "load_timeouts")
_seen: dict[int, dict[str, int]] = {}


def figures(svc: CacheService) -> dict[str, int]:
    """The loading counters of ``svc``'s target since ``svc`` was first asked (targets are
    shared by every test on one server)."""
    now = svc.stats()["target"]
    base = _seen.setdefault(id(svc), dict.fromkeys(FIGURES, 0))
    return {k: now[k] - base[k] for k in FIGURES}


def start_counting(svc: CacheService) -> CacheService:
    """Count ``figures(svc)`` from now on."""
    now = svc.stats()["target"]
    _seen[id(svc)] = {k: now[k] for k in FIGURES}
    return svc


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"soft_timeout": 0}, {"soft_timeout": -1}, {"soft_timeout": "1"}, {"soft_timeout": True},
    {"hard_timeout": 0}, {"hard_timeout": float("nan")}, {"hard_timeout": 1e300},
    {"soft_timeout": 2, "hard_timeout": 1},
    {"eager_refresh": 0}, {"eager_refresh": 1}, {"eager_refresh": 1.5}, {"eager_refresh": True},
    {"eager_refresh": "0.5"},
])
def test_bad_options_raise_before_anything_runs(options: dict[str, Any]) -> None:
    svc = CacheService(unique(), url=f"memory://{unique()}")
    load = Gate(blocked=False)
    with pytest.raises(ConfigurationError) as raised:
        svc.get_or_set("k", load, **options)
    assert next(iter(options)) in str(raised.value)
    assert load.calls == 0
    with pytest.raises(ConfigurationError):
        cached(cache=svc, **options)
    fastapi = pytest.importorskip("cache_service.integrations.fastapi")
    with pytest.raises(ConfigurationError):
        fastapi.cache_response(cache=AsyncCacheService(unique(), url="memory://"), **options)


@pytest.mark.parametrize("options", [{"ttl": 0}, {"ttl": "5"}, {"tags": 3}, {"tags": [""]},
                                     {"cache": "no"}])
def test_loaded_refuses_bad_terms(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Loaded("v", **options)


def test_load_timeout_is_a_cache_error_and_a_timeout_error() -> None:
    assert issubclass(LoadTimeout, CacheError)
    assert issubclass(LoadTimeout, TimeoutError)
    assert load_policy(soft_timeout=1.0) is load_policy(soft_timeout=1.0)


# -- soft_timeout -------------------------------------------------------------------------------
def test_soft_timeout_serves_the_stale_value_and_the_load_fills_the_cache(
        clocked: tuple[CacheService, FakeClock]) -> None:
    svc, clock = clocked
    stale_value(svc, clock)
    load = Gate("new")
    started = time.monotonic()
    assert svc.get_or_set("k", load, ttl=10, stale_if_error=3600, soft_timeout=SLOW) == "old"
    assert time.monotonic() - started < BOUND
    assert load.threads[0] != threading.get_ident()  # it runs in the background
    load.open()
    drain()
    assert svc.get("k") == "new"
    assert load.calls == 1
    assert figures(svc) == {"background_loads": 1, "background_errors": 0,
                            "background_refused": 0, "load_timeouts": 1}


def test_a_load_within_the_soft_timeout_is_returned(
        clocked: tuple[CacheService, FakeClock]) -> None:
    svc, clock = clocked
    stale_value(svc, clock)
    assert svc.get_or_set("k", lambda: "new", ttl=10, stale_if_error=3600,
                          soft_timeout=30) == "new"
    assert figures(svc)["load_timeouts"] == 0


def test_soft_timeout_without_a_stale_value_waits_for_the_load(url: str) -> None:
    svc = start_counting(CacheService(unique(), url=url))
    load = Gate("v")
    threading.Timer(0.2, load.open).start()
    assert svc.get_or_set("k", load, soft_timeout=SLOW) == "v"
    assert load.threads == [threading.get_ident()]  # no deadline: the caller loaded
    assert figures(svc)["load_timeouts"] == 0


def test_waiting_threads_share_one_background_load(
        clocked: tuple[CacheService, FakeClock]) -> None:
    svc, clock = clocked
    stale_value(svc, clock)
    load = Gate("new")
    got: list[Any] = []

    def call() -> None:
        got.append(svc.get_or_set("k", load, ttl=10, stale_if_error=3600, soft_timeout=SLOW,
                                  hard_timeout=30))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND * 5)
    assert got == ["old"] * 8
    load.open()
    drain()
    assert load.calls == 1
    assert svc.get_or_set("k", load, ttl=10, stale_if_error=3600, soft_timeout=SLOW) == "new"


def test_async_soft_timeout_leaves_a_task_loading(redis_server: RedisServer) -> None:
    clock = FakeClock(time.time())
    load = Gate("new")

    async def main() -> None:
        svc = AsyncCacheService(unique(), url=redis_server.url, wall_clock=clock)
        await svc.get_or_set("k", lambda: "old", ttl=10, stale_if_error=3600)
        clock.now += 11
        got = await asyncio.gather(*(svc.get_or_set(
            "k", load.coro, ttl=10, stale_if_error=3600, soft_timeout=SLOW)
            for _ in range(5)))
        assert got == ["old"] * 5
        load.open()
        while RUNNER.running:
            await asyncio.sleep(0.005)
        assert await svc.get("k") == "new"
        assert load.calls == 1
        await svc.clear_all()
        await svc.aclose()

    asyncio.run(main())


def test_an_async_deadline_is_kept_to_the_end_and_no_later() -> None:
    """An async wait with a deadline (its last millisecond is waited by yielding to the
    loop) never ends before it, and takes a load that lands in that last stretch while
    other tasks run. How late it ends is bench_loading's figure."""
    flight = Flight(0, None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # each wait starts at another phase of a millisecond
            started = loop.time()
            assert await flight.wait_async(0.003 + random.random() * 0.003) is None
            assert loop.time() - started >= 0.003
        ticks = 0
        deadline = loop.time() + 0.01

        async def other() -> None:  # settles the flight 0.3 ms before the deadline
            nonlocal ticks
            while loop.time() < deadline - 0.0003:
                ticks += 1
                await asyncio.sleep(0)
            flight.settle(Outcome("late"))

        ticker = asyncio.create_task(other())
        outcome = await flight.wait_async(deadline - loop.time())
        await ticker
        assert outcome is not None
        assert outcome.result() == "late"
        assert ticks > 0

    asyncio.run(main())


# -- hard_timeout -------------------------------------------------------------------------------
def test_hard_timeout_without_a_stale_value_raises_then_the_load_lands(url: str) -> None:
    svc = start_counting(CacheService(unique(), url=url))
    load = Gate("v")
    started = time.monotonic()
    with pytest.raises(LoadTimeout, match=r"hard_timeout=0\.05s") as raised:
        svc.get_or_set("user:secret-token", load, hard_timeout=SLOW)
    assert time.monotonic() - started < BOUND
    assert "secret-token" not in str(raised.value)  # keys are shown redacted
    assert svc.get_or_set("other", load, hard_timeout=SLOW, default="d") == "d"
    load.open()
    drain()
    assert svc.get("user:secret-token") == "v"
    assert svc.get("other") == "v"
    assert figures(svc)["load_timeouts"] == 2
    svc.clear_all()


def test_hard_timeout_serves_a_stale_value(clocked: tuple[CacheService, FakeClock]) -> None:
    svc, clock = clocked
    stale_value(svc, clock)
    load = Gate()
    assert svc.get_or_set("k", load, ttl=10, stale_if_error=3600, hard_timeout=SLOW) == "old"
    load.open()


def test_async_hard_timeout_and_default() -> None:
    load = Gate("v")

    async def main() -> None:
        svc = AsyncCacheService(unique(), url=f"memory://{unique()}")
        with pytest.raises(LoadTimeout):
            await svc.get_or_set("k", load.coro, hard_timeout=SLOW)
        assert await svc.get_or_set("k", load.coro, hard_timeout=SLOW, default=None) is None
        load.open()
        while RUNNER.running:
            await asyncio.sleep(0.005)
        assert await svc.get("k") == "v"
        assert load.calls == 1  # the second caller waited on the first one's load

    asyncio.run(main())


def test_a_loop_that_ends_hands_its_loads_back() -> None:
    """asyncio.run cancels the background task: nothing is left in flight, nothing logged."""
    load = Gate()

    async def main() -> None:
        svc = AsyncCacheService(unique(), url=f"memory://{unique()}")
        assert await svc.get_or_set("k", load.coro, hard_timeout=SLOW, default=1) == 1

    asyncio.run(main())
    assert in_flight() == 0
    assert RUNNER.running == 0


def test_cached_functions_take_the_timeouts(redis_server: RedisServer) -> None:
    load = Gate({"id": 1})
    svc = CacheService(unique(), url=redis_server.url)

    @cached(ttl=60, cache=svc, hard_timeout=SLOW, default={})
    def fetch(item: int) -> Any:
        return load()

    @cached(ttl=60, cache=svc, hard_timeout=SLOW)
    async def afetch(item: int) -> Any:
        return await load.coro()

    assert fetch(1) == {}
    with pytest.raises(LoadTimeout):
        asyncio.run(afetch(1))
    load.open()
    drain()
    assert fetch(1) == {"id": 1}
    svc.clear_all()


# -- failures and bounds ----------------------------------------------------------------------
def test_background_errors_are_counted_and_logged_without_the_key(
        url: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RUNNER, "_last_said", -1e9)
    svc = start_counting(CacheService(unique(), url=url))
    load = Gate(error=RuntimeError("database down"))
    with caplog.at_level(logging.WARNING, "cache_service"):
        for key in ("session:abc123", "session:def456"):
            assert svc.get_or_set(key, load, hard_timeout=SLOW, default="d") == "d"
        load.open()
        drain()
    said = [r.getMessage() for r in caplog.records if "background load" in r.getMessage()]
    assert len(said) == 1  # rate-limited
    assert "database down" in said[0]
    assert "abc123" not in said[0]
    assert svc.get("session:abc123") is None  # nothing cached
    assert figures(svc)["background_errors"] == 2


def test_the_runner_is_bounded_and_a_refused_caller_stops_waiting(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RUNNER, "limit", 1)
    svc = start_counting(CacheService(unique(), url=url))
    first, second = Gate("a"), Gate("b")
    with pytest.raises(LoadTimeout):
        svc.get_or_set("a", first, hard_timeout=SLOW)
    started = time.monotonic()
    with pytest.raises(LoadTimeout, match="background is full"):
        svc.get_or_set("b", second, hard_timeout=30)
    assert time.monotonic() - started < BOUND
    assert second.calls == 0
    assert in_flight() == 1  # only "a"
    first.open()
    drain()
    assert figures(svc)["background_refused"] == 1
    svc.clear_all()


def test_background_loads_fill_the_fallback_through_an_outage(
        fresh_redis_server: RedisServer) -> None:
    svc = start_counting(CacheService(unique(), url=fresh_redis_server.url,
                                      breaker_min_backoff=30.0, breaker_max_backoff=30.0))
    svc.set("warm", 1)
    load = Gate("v")

    def dying() -> Any:
        fresh_redis_server.kill()  # Redis goes away while the load runs
        return load()

    assert svc.get_or_set("k", dying, hard_timeout=SLOW, default="d") == "d"
    load.open()
    drain()
    assert svc.stats()["target"]["breaker_state"] == "open"
    assert svc.get("k") == "v"  # the load's value went to the fallback
    assert figures(svc)["background_errors"] == 0
    slow = Gate("w")
    assert svc.get_or_set("k2", slow, hard_timeout=SLOW, default="d") == "d"  # on the fallback
    slow.open()
    drain()
    assert svc.get("k2") == "w"


# -- eager refresh ------------------------------------------------------------------------------
def test_eager_refresh_starts_one_background_refresh_and_returns_at_once(
        clocked: tuple[CacheService, FakeClock]) -> None:
    svc, clock = clocked
    assert svc.get_or_set("k", lambda: "old", ttl=10, eager_refresh=0.5) == "old"
    load = Gate("new")
    clock.now += 4  # before the eager point: no refresh
    assert svc.get_or_set("k", load, ttl=10, eager_refresh=0.5) == "old"
    assert load.calls == 0
    clock.now += 2  # past it: every caller gets "old" at once, one refresh runs
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(
        svc.get_or_set("k", load, ttl=10, eager_refresh=0.5))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND * 5)
    assert got == ["old"] * 8
    load.open()
    drain()
    assert load.calls == 1
    assert svc.get("k") == "new"
    assert svc.stats()["misses"] == 1  # only the very first call missed
    assert figures(svc)["background_loads"] == 1


def test_eager_refresh_with_async_tasks(redis_server: RedisServer) -> None:
    clock = FakeClock(time.time())
    load = Gate("new")

    async def main() -> None:
        svc = AsyncCacheService(unique(), url=redis_server.url, wall_clock=clock)
        await svc.get_or_set("k", lambda: "old", ttl=10, eager_refresh=0.8)
        clock.now += 9
        got = await asyncio.gather(*(svc.get_or_set("k", load.coro, ttl=10, eager_refresh=0.8)
                                     for _ in range(10)))
        assert got == ["old"] * 10
        load.open()
        while RUNNER.running:
            await asyncio.sleep(0.005)
        assert await svc.get_or_set("k", load.coro, ttl=10, eager_refresh=0.8) == "new"
        assert load.calls == 1
        await svc.clear_all()
        await svc.aclose()

    asyncio.run(main())


def test_a_failed_eager_refresh_keeps_the_value(
        clocked: tuple[CacheService, FakeClock]) -> None:
    svc, clock = clocked
    svc.get_or_set("k", lambda: "old", ttl=10, eager_refresh=0.5)
    clock.now += 6
    load = Gate(error=RuntimeError("boom"), blocked=False)
    assert svc.get_or_set("k", load, ttl=10, eager_refresh=0.5) == "old"
    drain()
    assert svc.get("k") == "old"
    assert figures(svc)["background_errors"] == 1


def _eager_child(url: str, prefix: str, start_at: float, out: Any) -> None:
    import redis

    assert RUNNER.running == 0  # the parent's load is not this process's
    svc = CacheService(prefix, url=url)

    def load() -> str:
        with redis.Redis.from_url(url) as raw:
            raw.incr(f"{prefix}:loads")
        time.sleep(0.3)
        return "new"

    time.sleep(max(0.0, start_at - time.time()))
    out.put(svc.get_or_set("k", load, ttl=30, eager_refresh=0.01))
    while RUNNER.running:
        time.sleep(0.005)


def test_eager_refresh_is_single_flight_across_processes(redis_server: RedisServer) -> None:
    prefix = unique()
    svc = CacheService(prefix, url=redis_server.url)
    svc.get_or_set("k", lambda: "old", ttl=30, eager_refresh=0.01)
    time.sleep(0.35)  # past 1% of 30 s
    parked = Gate()
    assert svc.get_or_set("parked", parked, hard_timeout=SLOW, default=0) == 0  # one running
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 0.3
    procs = [ctx.Process(target=_eager_child, args=(redis_server.url, prefix, start_at, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(timeout=20)
    parked.open()
    drain()
    assert [p.exitcode for p in procs] == [0, 0]
    assert results == ["old", "old"]
    assert svc.get("k") == "new"
    with redis_server.client() as raw:
        assert int(raw.get(f"{prefix}:loads") or 0) == 1
        raw.delete(f"{prefix}:loads")
    svc.clear_all()
    out.close()
    out.join_thread()


# -- adaptive caching: Loaded ---------------------------------------------------------------
def test_loaded_picks_ttl_and_tags(url: str) -> None:
    svc = start_counting(CacheService(unique(), url=url))
    assert svc.get_or_set("k", lambda: Loaded({"a": 1}, ttl=5, tags=["t"]), ttl=600) == {"a": 1}
    remaining = svc.ttl("k")
    assert remaining is not None
    assert remaining <= 5
    svc.invalidate_tags("t")
    assert svc.get("k") is None
    svc.clear_all()


def test_loaded_cache_false_returns_without_storing(url: str) -> None:
    svc = start_counting(CacheService(unique(), url=url))
    assert svc.get_or_set("k", lambda: Loaded("not found", cache=False)) == "not found"
    assert not svc.exists("k")
    assert svc.get_or_set("n", lambda: Loaded(None, ttl=5), cache_none=True) is None
    assert svc.exists("n")
    svc.clear_all()


def test_loaded_through_cached_sync_and_async(redis_server: RedisServer) -> None:
    svc = CacheService(unique(), url=redis_server.url)
    calls: list[int] = []

    @cached(ttl=600, cache=svc, tags=["all"])
    def user(uid: int) -> Any:
        calls.append(uid)
        return Loaded(None, cache=False) if uid < 0 else Loaded({"id": uid}, ttl=2)

    @cached(ttl=600, cache=svc)
    async def auser(uid: int) -> Any:
        calls.append(uid)
        return Loaded(uid, tags=["mine"])

    assert user(-1) is None
    assert user(-1) is None
    assert user(1) == {"id": 1}
    assert user(1) == {"id": 1}
    assert calls == [-1, -1, 1]
    remaining = svc.ttl(user.cache_key(1))
    assert remaining is not None
    assert remaining <= 2
    svc.invalidate_tags("all")  # the call's tags, kept since Loaded named none
    assert user(1) == {"id": 1}
    assert asyncio.run(auser(7)) == 7
    svc.invalidate_tags("mine")
    assert asyncio.run(auser(7)) == 7
    assert calls == [-1, -1, 1, 1, 7, 7]
    svc.clear_all()


def test_loaded_waiters_share_the_value(url: str) -> None:
    svc = start_counting(CacheService(unique(), url=url))
    load = Gate(Loaded("v", cache=False))
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(svc.get_or_set("k", load)))
               for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    load.open()
    for t in threads:
        t.join(10)
    assert got == ["v"] * 4
    assert load.calls == 1


# -- the FastAPI helper -----------------------------------------------------------------------
def test_cache_response_serves_stale_past_the_soft_timeout(redis_server: RedisServer) -> None:
    fastapi = pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from cache_service.integrations.fastapi import cache_response

    clock = FakeClock(time.time())
    cache = AsyncCacheService(unique("api"), url=redis_server.url, wall_clock=clock)
    app = fastapi.FastAPI()
    version = {"n": 0}
    gate = Gate()

    @app.get("/item")
    @cache_response(ttl=10, cache=cache, stale_if_error=3600, soft_timeout=SLOW)
    async def item() -> dict[str, int]:
        if version["n"]:
            await gate.coro()
        version["n"] += 1
        return {"n": version["n"]}

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/item")).json() == {"n": 1}
            clock.now += 11
            stale = await client.get("/item")
            assert (stale.json(), stale.headers["x-cache"]) == ({"n": 1}, "HIT")
            gate.open()
            while RUNNER.running:
                await asyncio.sleep(0.005)
            assert (await client.get("/item")).json() == {"n": 2}
        await cache.clear_all()
        await cache.aclose()

    asyncio.run(main())


def test_background_threads_carry_the_callers_context(
        clocked: tuple[CacheService, FakeClock]) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("request-42")
    svc, clock = clocked
    stale_value(svc, clock)
    seen: list[str] = []
    gate = Gate()

    def load() -> str:
        gate()
        seen.append(var.get())
        return "new"

    assert svc.get_or_set("k", load, ttl=10, stale_if_error=3600, soft_timeout=SLOW) == "old"
    gate.open()
    drain()
    assert seen == ["request-42"]


def test_the_exporters_publish_the_loading_counters() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry

    from cache_service.integrations import otel, prometheus

    svc = CacheService(unique(), url=f"memory://{unique()}")
    load = Gate("v")
    assert svc.get_or_set("k", load, hard_timeout=SLOW, default=0) == 0
    load.open()
    drain()
    reg = CollectorRegistry()
    prometheus.register(reg)
    labels = {"target": svc.location}
    assert reg.get_sample_value("cache_service_background_loads_total", labels) == 1
    assert reg.get_sample_value("cache_service_load_timeouts_total", labels) == 1
    assert reg.get_sample_value("cache_service_background_refused_total", labels) == 0
    reader = InMemoryMetricReader()
    otel.instrument(MeterProvider(metric_readers=[reader]))
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    assert {"cache_service.background.loads", "cache_service.background.errors",
            "cache_service.background.refused", "cache_service.load_timeouts"} <= names
