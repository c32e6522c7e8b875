"""``keys(pattern)``: this service's live keys matching a Redis glob, on Redis, a Cluster, and
each fallback store; never another program's keys or another prefix's."""

from __future__ import annotations

from typing import Any

import pytest

from cache_service import CacheService, ConfigurationError


def _fill(cache: CacheService) -> None:
    for n in range(30):
        cache.set(f"user:{n}", n, ttl=60)
    cache.set("settings", 1, ttl=60)
    cache.set("gone", 1, ttl=60)
    cache.delete("gone")


@pytest.mark.parametrize("where", ["redis", "cluster", "memory", "host-fallback",
                                   "process-fallback"])
def test_keys_lists_own_live_keys(where: str, request: pytest.FixtureRequest) -> None:
    options: dict[str, Any] = {}
    if where == "redis":
        url = request.getfixturevalue("redis_server").url
    elif where == "cluster":
        url = request.getfixturevalue("redis_cluster").cluster_url
    elif where == "memory":
        url = "memory://"
    else:
        url = request.getfixturevalue("unreachable_redis")
        options["fallback"] = where.split("-", maxsplit=1)[0]
    cache = CacheService(f"listing-{where}", url=url, **options)
    other = CacheService(f"listing-{where}-other", url=url, **options)
    cache.clear_all()
    _fill(cache)
    other.set("user:99", 1)
    assert sorted(cache.keys("user:1*"), key=lambda k: int(k[5:])) == [
        "user:1", *(f"user:{n}" for n in range(10, 20))]
    assert len(cache.keys()) == 31
    assert len(cache.keys("*", limit=5)) == 5
    assert cache.keys("user:[ab]*") == []
    assert "user:99" not in cache.keys("user:9*")


def test_keys_skips_foreign_values(redis_server: Any) -> None:
    cache = CacheService("listing-foreign", url=redis_server.url)
    cache.clear_all()
    cache.set("mine", 1)
    redis_server.client().set("cs:listing-foreign::theirs", b"plain bytes")
    assert cache.keys() == ["mine"]
    with pytest.raises(ConfigurationError, match="limit"):
        cache.keys(limit=0)
