"""Sentinel clients cost about one socket timeout per call when the sentinels hang.

Asking the sentinels for the primary on every new connection, one after another (as
redis-py's Sentinel client does), would cost three socket timeouts per connection with three
hung sentinels even when the primary is fine. The clients ``build_sync_client``/
``build_async_client`` make (our own layer) remember the primary, ask again only when a
connection to it fails, and then ask every sentinel at once for at most about one timeout.
A failover is still followed.

Each test runs its own deployment: freezing sentinels can make them fail over (or enter
TILT) on resume, which later tests of the shared deployment must not inherit. Sentinels
stay frozen well under 2 s, so they do not enter TILT and fail over at once afterwards.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cache_service._redis.backend import (
    CONNECTIVITY_ERRORS,
    build_async_client,
    build_sync_client,
    classify_error,
    refresh_topology,
)
from cache_service._redis.wire_sentinel_client import AsyncSentinelWireClient, SentinelWireClient
from cache_service.config import TargetOptions, parse_url

from .helpers import hammer, unique
from .servers import SentinelDeployment

pytestmark = pytest.mark.slow

FAIL_FAST = TargetOptions(socket_timeout=0.25, connect_timeout=0.25)
BOUND = 0.9  # generous: about one 0.25 s timeout per call, on a loaded 2-core machine
# A call to a frozen primary may pay a reply timeout, one discovery (every sentinel at once,
# 0.3 s) and a connect timeout: 0.8 s, plus scheduling on a loaded machine (0.96 s seen).
# Asking the sentinels one by one would cost at least 1.4 s.
GONE_BOUND = 1.2


@pytest.fixture
def options() -> TargetOptions:
    """``FAIL_FAST`` (our own connection layer: the only one for Sentinel)."""
    return FAIL_FAST


def fresh(client: Any) -> Any:
    """Drop the client's idle data connections: the next call makes a new one (awaitable for
    an asyncio client)."""
    assert isinstance(client, (SentinelWireClient, AsyncSentinelWireClient))
    return client.disconnect()


def primary_of(client: Any) -> Any:
    """The primary the client sends to now."""
    assert isinstance(client, SentinelWireClient)
    return client.primary_address


@pytest.fixture
def deployment() -> Iterator[SentinelDeployment]:
    """A private primary + replica + three sentinels."""
    with SentinelDeployment() as private:
        yield private


class Timings:
    """Durations and failures of calls made from several threads."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.failures: list[BaseException] = []
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return fn()
        except CONNECTIVITY_ERRORS as exc:
            with self._lock:
                self.failures.append(exc)
            return None
        finally:
            with self._lock:
                self.durations.append(time.perf_counter() - started)

    @property
    def slowest(self) -> float:
        return max(self.durations)


def frozen(processes: list[Any]) -> Any:
    """Context manager: SIGSTOP ``processes`` inside, SIGCONT on the way out."""

    class Frozen:
        def __enter__(self) -> None:
            for process in processes:
                process.freeze()

        def __exit__(self, *exc: object) -> None:
            for process in processes:
                process.thaw()

    return Frozen()


def eventually_ok(fn: Callable[[], Any], timeout: float) -> float:
    """Call ``fn`` until it raises no connectivity error; seconds it took."""
    started = time.perf_counter()
    while True:
        try:
            fn()
            return time.perf_counter() - started
        except CONNECTIVITY_ERRORS:
            assert time.perf_counter() - started < timeout, "no recovery"
            time.sleep(0.05)


def test_sync_hung_sentinels_cost_nothing_then_a_failover_is_followed(
        deployment: SentinelDeployment, options: TargetOptions) -> None:
    client = build_sync_client(parse_url(deployment.url), options)
    assert isinstance(client, SentinelWireClient)
    key = unique("sentinel-hang")
    client.set(key, b"before")
    deployment.wait_for_replication()
    fine = Timings()
    primary = deployment.primary()  # asked now: the sentinels will not answer in a moment

    def new_connection_each_call(n: int) -> None:
        for _ in range(5):
            fresh(client)
            assert fine.call(lambda: client.get(key)) == b"before"

    with frozen(deployment.sentinel_servers):
        assert hammer(new_connection_each_call, threads=4) == []
        refresh_topology(client)  # the sentinels do not answer: the known primary stays
        assert client.get(key) == b"before"
        primary.kill()
        gone = Timings()
        hammer(lambda n: [gone.call(lambda: client.get(key)) for _ in range(3)], threads=4)
    assert fine.failures == [], fine.failures
    assert fine.slowest < BOUND, fine.durations
    assert len(gone.failures) == 12, gone.failures
    assert gone.slowest < GONE_BOUND, gone.durations
    assert {classify_error(e) for e in gone.failures} <= {"outage", "broken"}
    assert any(type(e).__name__ == "MasterNotFoundError" for e in gone.failures)
    new = deployment.wait_for_failover(primary.address)
    eventually_ok(lambda: client.set(key, b"after"), timeout=5)
    assert primary_of(client) == new
    with deployment.server_for(new).client() as raw:
        assert raw.get(key) == b"after"
    client.close()


def test_async_hung_sentinels_cost_nothing_then_a_frozen_primary_is_failed_over(
        deployment: SentinelDeployment, options: TargetOptions) -> None:
    key = unique("sentinel-hang")

    async def timed(fn: Callable[[], Any], durations: list[float]) -> Any:
        started = time.perf_counter()
        try:
            return await fn()
        except CONNECTIVITY_ERRORS as exc:
            return exc
        finally:
            durations.append(time.perf_counter() - started)

    async def main() -> tuple[list[float], list[float], list[Any]]:
        client = build_async_client(parse_url(deployment.url), options)
        try:
            await client.set(key, b"before")
            deployment.wait_for_replication()
            fine: list[float] = []
            gone: list[float] = []
            old = deployment.primary()

            async def fresh_get() -> Any:
                await fresh(client)
                return await client.get(key)

            with frozen(deployment.sentinel_servers):
                for _ in range(3):
                    results = await asyncio.gather(*(timed(fresh_get, fine) for _ in range(4)))
                    assert results == [b"before"] * 4, results
                old.freeze()
                failures: list[Any] = []
                for _ in range(3):
                    failures += await asyncio.gather(
                        *(timed(lambda: client.get(key), gone) for _ in range(4)))
            new = deployment.wait_for_failover(old.address)
            started = time.perf_counter()
            while True:
                try:
                    await client.set(key, b"after")
                    break
                except CONNECTIVITY_ERRORS:
                    assert time.perf_counter() - started < 5, "the failover was not followed"
                    await asyncio.sleep(0.05)
            with deployment.server_for(new).client() as raw:
                assert raw.get(key) == b"after"
            return fine, gone, failures
        finally:
            await client.aclose()

    fine, gone, failures = asyncio.run(main())
    assert max(fine) < BOUND, fine
    assert max(gone) < GONE_BOUND, gone
    assert all(isinstance(f, CONNECTIVITY_ERRORS) for f in failures), failures
    assert any(type(f).__name__ == "MasterNotFoundError" for f in failures), failures


def test_a_failover_is_followed_with_healthy_sentinels(deployment: SentinelDeployment,
                                                       options: TargetOptions) -> None:
    """The remembered primary is dropped when it dies; the next connection finds the new
    one (sync and asyncio)."""
    key = unique("sentinel-follow")
    client = build_sync_client(parse_url(deployment.url), options)
    client.set(key, b"v1")

    async def async_set(value: bytes) -> None:
        aclient = build_async_client(parse_url(deployment.url), options)
        try:
            await aclient.set(key, value)
        finally:
            await aclient.aclose()

    asyncio.run(async_set(b"v1"))
    deployment.wait_for_replication()
    old = deployment.kill_primary()
    with pytest.raises(CONNECTIVITY_ERRORS):
        client.set(key, b"v2")
    new = deployment.wait_for_failover(old)
    eventually_ok(lambda: client.set(key, b"v2"), timeout=5)
    eventually_ok(lambda: asyncio.run(async_set(b"v3")), timeout=5)
    with deployment.server_for(new).client() as raw:
        assert raw.get(key) == b"v3"
    client.close()


def test_replica_reads_skip_hung_sentinels(deployment: SentinelDeployment,
                                           options: TargetOptions) -> None:
    """With ``read_from_replicas`` the live replicas are remembered too: new replica
    connections cost nothing while the sentinels hang, and a dead replica is dropped (reads
    fall back to the primary)."""
    url = deployment.url + "?read_from_replicas=true"
    client = build_sync_client(parse_url(url), options)
    key = unique("sentinel-replica")
    client.set(key, b"v")
    deployment.wait_for_replication()
    (replica,) = deployment.replicas()
    assert client.get(key) == b"v"
    reads = Timings()
    with frozen(deployment.sentinel_servers):
        for _ in range(5):
            fresh(client)
            assert reads.call(lambda: client.get(key)) == b"v"
        with replica.client() as raw:
            assert raw.info("commandstats").get("cmdstat_get", {}).get("calls", 0) >= 5
        replica.kill()
        for _ in range(3):
            fresh(client)
            reads.call(lambda: client.get(key))
        assert reads.call(lambda: client.get(key)) == b"v"  # from the primary
    assert reads.slowest < BOUND, reads.durations
    client.close()
