"""A pooled connection the server closed while it was idle is not an outage, on any loop.

Redis' ``timeout`` setting and ``CLIENT KILL`` close idle connections; a proxy that drops its
connections resets them (under uvloop, redis.asyncio then raises RuntimeError). The next call
must be served by Redis (one retry on a fresh connection), the breaker must stay closed, and
nothing may reach the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from cache_service import AsyncCacheService, CacheService

from .helpers import unique
from .servers import ChaosProxy, RedisServer

# Every guarantee here holds over redis-py's clients and over our own layer.
pytestmark = pytest.mark.usefixtures("over_both_connections")

KINDS = ["sync", "asyncio", "uvloop"]


def _drop_idle_connections(how: str, server: RedisServer, proxy: ChaosProxy) -> None:
    if how == "server-timeout":
        with server.client() as raw:
            raw.config_set("timeout", 1)
        time.sleep(2.2)  # Redis checks idle clients about once a second
        with server.client() as raw:
            raw.config_set("timeout", 0)
    elif how == "client-kill":
        with server.client() as raw:
            raw.client_kill_filter(_type="normal", skipme=True)
    else:  # the proxy resets every connection, then accepts new ones again
        proxy.cut()
        time.sleep(0.1)
        proxy.heal()


def _run(kind: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if kind == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


@pytest.mark.parametrize("how", ["server-timeout", "client-kill", "proxy-reset"])
@pytest.mark.parametrize("kind", KINDS)
def test_closed_idle_connections_are_not_an_outage(
        chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer, kind: str, how: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cache_service")
    url = chaos_proxy.url if how == "proxy-reset" else fresh_redis_server.url
    prefix = unique()
    options: dict[str, Any] = {"socket_timeout": 0.5, "connect_timeout": 0.5}

    if kind == "sync":
        svc = CacheService(prefix, url=url, **options)
        for i in range(8):  # several pooled connections, all idle afterwards
            svc.set(f"k{i}", i)
        _drop_idle_connections(how, fresh_redis_server, chaos_proxy)
        assert [svc.get(f"k{i}") for i in range(8)] == list(range(8))
        stats = svc.stats()["target"]
    else:
        async def main() -> None:
            nonlocal stats
            svc = AsyncCacheService(prefix, url=url, **options)
            await asyncio.gather(*(svc.set(f"k{i}", i) for i in range(8)))  # 8 connections
            await asyncio.to_thread(_drop_idle_connections, how, fresh_redis_server,
                                    chaos_proxy)
            values = await asyncio.gather(*(svc.get(f"k{i}") for i in range(8)))
            assert list(values) == list(range(8))
            assert [await svc.get(f"k{i}") for i in range(8)] == list(range(8))
            stats = (await svc.stats())["target"]
            await svc.aclose()

        stats: dict[str, Any] = {}
        _run(kind, main)
    assert stats["breaker_opened"] == 0, stats
    assert stats["memory_reads"] == 0
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]


@pytest.mark.parametrize("kind", KINDS)
def test_a_fresh_connection_that_fails_is_an_outage(
        chaos_proxy: ChaosProxy, kind: str) -> None:
    """The one retry is for pooled connections: when the server is really gone the breaker
    opens on the first call, which is served by the fallback."""
    prefix = unique()
    options: dict[str, Any] = {"socket_timeout": 0.2, "connect_timeout": 0.2}
    if kind == "sync":
        svc = CacheService(prefix, url=chaos_proxy.url, **options)
        svc.set("k", 1)
        chaos_proxy.cut()
        start = time.perf_counter()
        assert svc.get("k") is None
        assert time.perf_counter() - start < 0.5
        assert svc.stats()["target"]["breaker_opened"] == 1
        chaos_proxy.heal()
        return

    async def main() -> None:
        svc = AsyncCacheService(prefix, url=chaos_proxy.url, **options)
        await svc.set("k", 1)
        chaos_proxy.cut()
        start = time.perf_counter()
        assert await svc.get("k") is None
        assert time.perf_counter() - start < 0.5
        assert (await svc.stats())["target"]["breaker_opened"] == 1
        chaos_proxy.heal()
        await svc.aclose()

    _run(kind, main)
