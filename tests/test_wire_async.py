"""The asyncio driver under concurrency, on asyncio's loop and on uvloop, against real servers.

What it searches for: a reply handed to the wrong task (1,000 tasks on one connection; tasks
cancelled at random points, Hypothesis choosing which and when), a hung server costing more
than one deadline for the requests queued behind the first, a reset that leaves tasks waiting,
an in-flight window that is not a bound, requests of one loop iteration written separately,
a push handler's bug stalling the replies behind the push.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_service._wire import (
    AsyncConnection,
    ConnectionLost,
    WireSettings,
    WireTimeout,
    connect,
)
from tests.servers import ChaosProxy, RedisServer

LOOPS = ["asyncio", "uvloop"]
# Connections of examples that failed or were cut mid-flight are left to the collector; their
# transports' ResourceWarnings must not land in whatever test happens to collect them (issue
# 18: the async driver should close them itself).
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(autouse=True, scope="module")
def _collect_left_transports() -> Iterator[None]:
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def run(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if loop == "uvloop" else None) as r:
        r.run(main())


def patient(server: RedisServer | ChaosProxy, **overrides: Any) -> WireSettings:
    options: dict[str, Any] = {"connect_timeout": 2.0, "request_timeout": 5.0, **overrides}
    return WireSettings(host=server.host, port=server.port, **options)


async def _own_values(connection: AsyncConnection, keys: list[str]) -> None:
    await connection.pipeline([["SET", key, key.encode() * 3] for key in keys])


@pytest.mark.parametrize("loop", LOOPS)
def test_a_thousand_tasks_on_one_connection_get_their_own_replies(
    loop: str, redis_server: RedisServer
) -> None:
    async def main() -> None:
        connection = await connect(patient(redis_server))
        keys = [f"wire-1k-{loop}-{i}" for i in range(1000)]
        await _own_values(connection, keys)

        async def one(key: str) -> None:
            for _ in range(3):
                assert await connection.execute("GET", key) == key.encode() * 3
                await asyncio.sleep(random.random() * 0.001)

        await asyncio.gather(*[one(key) for key in keys])
        assert await connection.execute("DEL", *keys) == 1000
        assert connection.in_flight == 0
        connection.close()

    run(loop, main)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
# asyncio's loop only for now: under uvloop one full-suite run in five hung in uvloop's own
# loop.close() (C code, out of reach of pytest-timeout) after a random-cancellation example;
# not yet understood, recorded in issue 18 (the layer is not used by the services yet).
# One seed drawn by Hypothesis, then a plain Random: the tasks draw in an order that depends on
# scheduling, and draws from Hypothesis' own random must not (its replay would differ).
@given(st.integers(0, 2**32 - 1), st.just("asyncio"))
def test_cancelling_tasks_at_random_leaves_the_connection_in_step(
    redis_server: RedisServer, seed: int, loop: str
) -> None:
    rnd = random.Random(seed)

    async def main() -> None:
        connection = await connect(patient(redis_server), max_in_flight=rnd.choice([16, 1024]))
        keys = [f"wire-cancel-{i}" for i in range(200)]
        await _own_values(connection, keys)

        async def one(key: str) -> None:
            for _ in range(rnd.randint(1, 3)):
                if rnd.random() < 0.5:
                    assert await connection.execute("GET", key) == key.encode() * 3
                else:
                    assert await connection.pipeline([["GET", key], ["STRLEN", key]]) == [
                        key.encode() * 3, len(key) * 3]

        tasks = [asyncio.ensure_future(one(key)) for key in keys]
        for _ in range(rnd.randint(0, 6)):
            for task in rnd.sample(tasks, rnd.randint(0, 40)):
                task.cancel()
            await asyncio.sleep(0 if rnd.random() < 0.7 else 0.0005)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results), [
            r for r in results if r is not None and not isinstance(r, asyncio.CancelledError)]
        for key in rnd.sample(keys, 20):  # the next requests get their own replies
            assert await connection.execute("GET", key) == key.encode() * 3
        assert connection.in_flight == 0
        assert not connection.closed
        connection.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_hung_server_fails_every_request_in_flight_at_once(
    loop: str, chaos_proxy: ChaosProxy
) -> None:
    async def main() -> None:
        connection = await connect(patient(chaos_proxy, request_timeout=0.25))
        assert await connection.execute("PING") == b"PONG"
        chaos_proxy.hang()
        started = time.monotonic()

        async def waves() -> list[BaseException | object]:
            first = [asyncio.ensure_future(connection.execute("GET", f"k{i}")) for i in range(50)]
            await asyncio.sleep(0.1)  # a second wave, queued behind the first
            second = [asyncio.ensure_future(connection.execute("GET", "k")) for _ in range(50)]
            return await asyncio.gather(*first, *second, return_exceptions=True)

        results = await waves()
        elapsed = time.monotonic() - started
        assert all(isinstance(r, WireTimeout) for r in results), results[:3]
        assert elapsed < 2.0  # one deadline, not one per request (100 x 0.25 s)
        assert connection.closed
        with pytest.raises(WireTimeout):
            await connection.execute("PING")
        chaos_proxy.heal()
        again = await connect(patient(chaos_proxy))
        assert await again.execute("PING") == b"PONG"
        again.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_reset_fails_every_request_in_flight_fast(loop: str, chaos_proxy: ChaosProxy) -> None:
    async def main() -> None:
        connection = await connect(patient(chaos_proxy, request_timeout=10.0))
        assert await connection.execute("PING") == b"PONG"
        chaos_proxy.latency(0.5)  # replies held back: the requests are in flight
        tasks = [asyncio.ensure_future(connection.execute("GET", "k")) for _ in range(100)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        chaos_proxy.reset_connections()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, ConnectionLost) and not isinstance(r, WireTimeout)
                   for r in results), results[:3]
        assert time.monotonic() - started < 3.0
        chaos_proxy.heal()
        again = await connect(patient(chaos_proxy))
        assert await again.execute("PING") == b"PONG"
        again.close()

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_the_in_flight_window_bounds_requests(loop: str, redis_server: RedisServer) -> None:
    async def main() -> None:
        connection = await connect(patient(redis_server), max_in_flight=8)
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, connection.in_flight)
                await asyncio.sleep(0)

        watcher = asyncio.ensure_future(watch())
        replies = await asyncio.gather(*[connection.execute("ECHO", str(i)) for i in range(300)])
        watcher.cancel()
        assert replies == [str(i).encode() for i in range(300)]
        assert 1 < peak <= 8
        connection.close()

    run(loop, main)


def test_requests_of_one_loop_iteration_go_out_in_one_write(redis_server: RedisServer) -> None:
    async def main() -> None:
        connection = await connect(patient(redis_server))
        transport = connection._transport
        assert transport is not None
        writes: list[bytes] = []
        write = transport.write

        def counting(data: bytes | bytearray | memoryview) -> None:
            writes.append(bytes(data))
            write(data)

        transport.write = counting  # type: ignore[method-assign]
        replies = await asyncio.gather(*[connection.execute("ECHO", str(i)) for i in range(100)])
        assert replies == [str(i).encode() for i in range(100)]
        assert len(writes) == 1
        connection.close()

    run("asyncio", main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_failing_push_handler_does_not_stall_replies(
    loop: str, redis_server: RedisServer
) -> None:
    seen: list[list[object]] = []

    def handler(message: list[object]) -> None:
        seen.append(message)
        raise RuntimeError("handler bug")

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: None)
        connection = await connect(patient(redis_server, protocol=3), on_push=handler)
        other = await connect(patient(redis_server))
        await connection.execute("CLIENT", "TRACKING", "ON")
        await other.execute("SET", "wire-push-bug", "1")
        await connection.execute("GET", "wire-push-bug")
        await other.execute("SET", "wire-push-bug", "2")
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen
        assert await connection.execute("GET", "wire-push-bug") == b"2"
        await other.execute("DEL", "wire-push-bug")
        connection.close()
        other.close()

    run(loop, main)
