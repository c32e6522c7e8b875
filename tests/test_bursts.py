"""A burst of concurrent callers is not an outage: past redis-py's default pool bound (100 in
redis-py 8, which then raises ``MaxConnectionsError``), with asyncio tasks and with threads,
over redis-py's clients and over our own connection layer."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from cache_service import AsyncCacheService, CacheService

from .helpers import unique
from .servers import RedisServer

BURST = 300  # three times redis-py 8's default max_connections


@pytest.mark.parametrize("connection", ["redis-py", "wire"])
def test_a_burst_of_tasks_is_served_by_redis(fresh_redis_server: RedisServer,
                                             connection: str) -> None:
    async def main() -> dict[str, Any]:
        svc = AsyncCacheService(unique(), url=fresh_redis_server.url, connection=connection,
                                socket_timeout=5.0, connect_timeout=5.0)
        await svc.set("k", {"v": 1})
        values = await asyncio.gather(*(svc.get("k") for _ in range(BURST)))
        assert values == [{"v": 1}] * BURST
        stats = await svc.stats()
        await svc.aclose()
        return stats

    stats = asyncio.run(main())
    assert stats["target"]["breaker_opened"] == 0, stats["target"]
    assert stats["target"]["memory_reads"] == 0


@pytest.mark.parametrize("connection", ["redis-py", "wire"])
def test_a_burst_of_threads_is_served_by_redis(fresh_redis_server: RedisServer,
                                               connection: str) -> None:
    svc = CacheService(unique(), url=fresh_redis_server.url, connection=connection,
                       socket_timeout=5.0, connect_timeout=5.0)
    svc.set("k", "v")
    start = threading.Barrier(150)
    seen: list[Any] = []

    def work() -> None:
        start.wait(10)
        seen.append(svc.get("k"))

    threads = [threading.Thread(target=work) for _ in range(150)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == ["v"] * 150
    stats = svc.stats()["target"]
    assert stats["breaker_opened"] == 0, stats
    assert stats["memory_reads"] == 0
    svc.close()
