"""What only a real Redis shows for the operations of issue 9: atomic counters across
processes, foreign and corrupt payloads in batches, tag keys and their bounds, and
``cache_response`` invalidation that does not depend on the size of the database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import httpx
import pytest
from fastapi import FastAPI

from cache_service import AsyncCacheService, CacheService, NotAnIntegerError
from cache_service.integrations.fastapi import cache_response, invalidate_path

from .helpers import unique
from .servers import RedisServer

COUNT = textwrap.dedent("""
    import sys, threading
    from cache_service import CacheService
    svc = CacheService(sys.argv[2], url=sys.argv[1], socket_timeout=2, connect_timeout=2)
    def work():
        for _ in range(500):
            svc.incr("hits")
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert svc.stats()["target"]["memory_writes"] == 0, svc.stats()  # every incr on Redis
""")


def test_incr_is_atomic_across_processes_and_threads(redis_server: RedisServer) -> None:
    prefix = unique()
    children = [subprocess.Popen([sys.executable, "-c", COUNT, redis_server.url, prefix])
                for _ in range(2)]
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    svc = CacheService(prefix, url=redis_server.url)
    assert svc.get("hits") == 4000
    left = svc.ttl("hits")
    assert left is not None
    assert 0 < left <= svc.default_ttl
    svc.clear_all()


def test_batches_treat_foreign_and_corrupt_payloads_as_misses(redis_server: RedisServer) -> None:
    svc = CacheService(unique(), url=redis_server.url)
    raw = redis_server.client()
    svc.set_many({"good": 1, "bad": 2, "foreign": 3})
    raw.set(svc.full_key("bad"), b"\xc5\x01\x01" + bytes(8) + b"{not json")
    raw.set(svc.full_key("foreign"), b"written by someone else")
    raw.hset(svc.full_key("hash"), "f", "v")
    assert svc.get_many(["good", "bad", "foreign", "hash"]) == {"good": 1}
    assert raw.exists(svc.full_key("bad")) == 0  # a corrupt payload of ours: removed
    assert raw.exists(svc.full_key("foreign"), svc.full_key("hash")) == 2  # never ours to touch
    assert svc.add("foreign", "ours now") is False  # someone else's value: left alone
    assert raw.get(svc.full_key("foreign")) == b"written by someone else"
    assert svc.add("bad", "ours") is True  # a removed payload of ours counts as absent
    assert svc.add("hash", "x") is False
    assert svc.touch("hash") is False
    assert svc.ttl("hash") is None
    raw.set(svc.full_key("text"), b"12")  # a bare integer string is not one of our counters
    with pytest.raises(NotAnIntegerError):
        svc.incr("hash")
    with pytest.raises(NotAnIntegerError):
        svc.incr("text")  # someone else's string: refused, left as it was
    assert raw.get(svc.full_key("text")) == b"12"
    assert raw.hget(svc.full_key("hash"), "f") == b"v"
    svc.clear_all()
    raw.delete(svc.full_key("hash"), svc.full_key("text"), svc.full_key("foreign"))


def test_tag_keys_live_outside_the_prefix_and_expire_with_their_values(
        redis_server: RedisServer) -> None:
    svc = CacheService(unique(), url=redis_server.url)
    raw = redis_server.client()
    svc.set("a", 1, ttl=2, tags=["t"])
    svc.set("b", 1, ttl=60, tags=["t"])
    svc.set("c", 1, ttl=1, tags=["t"])  # a shorter TTL never shortens the tag's
    tag = f"cs::tag:{{{svc.prefix}}}::t"
    assert raw.get(tag) is not None
    assert 60_000 < raw.pttl(tag) <= 65_000  # the longest value's TTL plus a margin
    assert svc.invalidate_pattern("*") == 3  # only values, never tag keys
    assert raw.exists(tag) == 1
    assert svc.clear_all() == 0
    svc.set("a", 1, ttl=0.1, tags=["short"])
    assert raw.pttl(f"cs::tag:{{{svc.prefix}}}::short") <= 5_100
    svc.invalidate_tags("t")
    assert raw.exists(tag) == 0  # cleaned on invalidation


def test_cache_response_invalidation_ignores_unrelated_keys(
        fresh_redis_server: RedisServer) -> None:
    """With 200,000 unrelated keys in the db, invalidating one path (or a route) is one
    UNLINK: no SCAN, ~a millisecond, and only that path's entries are gone."""
    raw = fresh_redis_server.client()
    raw.execute_command("DEBUG", "POPULATE", 200_000, "unrelated")
    assert raw.dbsize() >= 200_000
    cache = AsyncCacheService(unique("api"), url=fresh_redis_server.url)
    app = FastAPI()
    calls: list[int] = []

    @app.get("/items/{item_id}")
    @cache_response(ttl=60, cache=cache)
    async def item(item_id: int, q: int = 0) -> dict[str, int]:
        calls.append(item_id)
        return {"id": item_id, "q": q}

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for path in ("/items/1", "/items/1?q=2", "/items/2", "/items/3"):
                assert (await client.get(path)).headers["x-cache"] == "MISS"
            raw.config_resetstat()
            started = time.perf_counter()
            await item.invalidate("/items/1")  # type: ignore[attr-defined]
            one_path = time.perf_counter() - started
            started = time.perf_counter()
            await invalidate_path("/items/2", cache)
            any_route = time.perf_counter() - started
            stats = raw.info("commandstats")
            assert "cmdstat_scan" not in stats, stats
            assert stats["cmdstat_unlink"]["calls"] == 2
            assert one_path < 0.05, one_path
            assert any_route < 0.05, any_route
            hits = {p: (await client.get(p)).headers["x-cache"]
                    for p in ("/items/1", "/items/1?q=2", "/items/2", "/items/3")}
            assert hits == {"/items/1": "MISS", "/items/1?q=2": "MISS", "/items/2": "MISS",
                            "/items/3": "HIT"}
            await item.invalidate()  # type: ignore[attr-defined]
            assert (await client.get("/items/3")).headers["x-cache"] == "MISS"
            assert "cmdstat_scan" not in raw.info("commandstats")
        await cache.aclose()

    asyncio.run(main())
    assert calls == [1, 1, 2, 3, 1, 1, 2, 3]
