"""The django-redis drop-in: an app written for django-redis (``tests/apps/django_redis_app.py``)
runs unchanged on django-redis itself, on DjangoCache with Redis up and with Redis refused,
and every call returns the same; django-redis' OPTIONS are mapped or refused by name."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from cache_service import ConfigurationError
from tests.servers import RedisServer

pytest.importorskip("django")
pytest.importorskip("django_redis")
from django.conf import settings

if not settings.configured:
    settings.configure(SECRET_KEY="integration-tests-secret-key-0123456789", USE_TZ=True, CACHES={})

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from redis.exceptions import LockError, LockNotOwnedError

from cache_service.integrations.django import DjangoCache
from tests.apps import django_redis_app as app

OURS = "cache_service.integrations.django.DjangoCache"
# What a django-redis project typically has in OPTIONS: all of it maps
DJANGO_REDIS_OPTIONS = {
    "CLIENT_CLASS": "django_redis.client.DefaultClient",
    "SERIALIZER": "django_redis.serializers.pickle.PickleSerializer",
    "COMPRESSOR": "django_redis.compressors.zlib.ZlibCompressor",
    "IGNORE_EXCEPTIONS": True,
    "SOCKET_CONNECT_TIMEOUT": 0.25,
    "SOCKET_TIMEOUT": 0.25,
    "CONNECTION_POOL_KWARGS": {"max_connections": 50},
}


def _caches(backend: str, url: str, name: str) -> dict[str, Any]:
    options = {} if backend.startswith("django_redis") else DJANGO_REDIS_OPTIONS
    return {"default": {"BACKEND": backend, "LOCATION": url, "TIMEOUT": 60,
                        "KEY_PREFIX": f"app-{name}", "OPTIONS": options}}


def _run_app(caches: dict[str, Any]) -> list[tuple[str, Any]]:
    with override_settings(CACHES=caches):
        return app.scenario() + asyncio.run(app.async_scenario())


@pytest.fixture(scope="module")
def django_redis_answers(redis_server: RedisServer) -> list[tuple[str, Any]]:
    """What every call of the app returns on django-redis itself."""
    return _run_app(_caches("django_redis.cache.RedisCache", redis_server.url, "reference"))


@pytest.mark.parametrize("where", ["redis_server", "unreachable_redis"],
                         ids=["redis-up", "redis-refused"])
def test_the_app_runs_unchanged(where: str, django_redis_answers: list[tuple[str, Any]],
                                request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(where)
    url = server if isinstance(server, str) else server.url
    assert _run_app(_caches(OURS, url, where)) == django_redis_answers
    assert len(django_redis_answers) > 50


def test_what_differs_from_django_redis(redis_server: RedisServer) -> None:
    """incr(ignore_key_check=True) starts the key with the cache's TIMEOUT (django-redis: no
    expiry); patterns never reach another KEY_PREFIX; clear() is this namespace only."""
    one = DjangoCache(redis_server.url, {"KEY_PREFIX": "diff-one", "TIMEOUT": 60})
    two = DjangoCache(redis_server.url, {"KEY_PREFIX": "diff-two", "TIMEOUT": 60})
    one.clear()
    two.clear()
    assert one.incr("n", ignore_key_check=True) == 1
    assert one.ttl("n") == 60
    two.set("k", 1)
    one.set("k", 1)
    assert one.delete_pattern("*") == 2
    assert two.keys("*") == ["k"]
    with pytest.raises(ValueError, match="own KEY_PREFIX"):
        one.delete_pattern("*", prefix="diff-two")
    # a foreign key under our namespace's name is never listed nor deleted
    redis_server.client().set("cs:django:diff-two::diff-two:1:foreign", b"not ours")
    assert two.keys("*") == ["k"]
    assert two.delete_pattern("*") == 1
    assert redis_server.client().get("cs:django:diff-two::diff-two:1:foreign") == b"not ours"


def test_lock_semantics(redis_server: RedisServer) -> None:
    """redis-py's Lock errors and thread-local tokens; the lock holds across threads."""
    cache = DjangoCache(redis_server.url, {"KEY_PREFIX": "locks", "TIMEOUT": 60})
    lock = cache.lock("l", timeout=5)
    with pytest.raises(LockError, match="not owned or is already unlocked"):
        lock.release()
    assert lock.acquire()
    with pytest.raises(LockError, match="Unable to acquire"), \
            cache.lock("l", blocking=False):
        pass
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(lock.owned()))
    thread.start()
    thread.join()
    assert other == [False]  # the token is per thread, as redis-py's (thread_local=True)
    cache.delete("l")  # someone removed it: the holder has lost it
    with pytest.raises(LockNotOwnedError):
        lock.release()
    with pytest.raises(ValueError, match="lock timeout"):
        cache.lock("l", timeout=0)

    async def holders() -> list[bool]:
        async with cache.alock("al", timeout=5) as held:
            return [await held.owned(), await cache.alock("al").acquire(blocking=False)]

    assert asyncio.run(holders()) == [True, False]
    assert not cache.lock("al").locked()


@pytest.mark.parametrize(("options", "needle"), [
    ({"CLIENT_CLASS": "django_redis.client.ShardClient"}, "redis\\+cluster://"),
    ({"CLIENT_CLASS": "django_redis.client.HerdClient"}, "get_or_set"),
    ({"CLIENT_CLASS": "django_redis.client.SentinelClient"}, "redis\\+sentinel://"),
    ({"CLIENT_CLASS": "myapp.Client"}, "unknown client"),
    ({"SENTINELS": [("h", 26379)]}, "redis\\+sentinel://"),
    ({"CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool"}, "max_connections"),
    ({"REDIS_CLIENT_CLASS": "redis.Redis"}, "the clients are ours"),
    ({"PARSER_CLASS": "redis.connection._HiredisParser"}, "hiredis"),
    ({"CONNECTION_POOL_KWARGS": {"retry_on_timeout": True}}, "retry_on_timeout"),
    ({"CLOSE_CONNECTION": True}, "pooled per process"),
    ({"PICKLE_VERSION": 2}, "highest protocol"),
    ({"COMPRESSOR": "django_redis.compressors.lzma.LZMACompressor"}, "zstd, lz4, zlib, none"),
    ({"SERIALIZER": "myapp.YamlSerializer"}, "json, msgpack, pickle"),
    ({"IGNORE_EXCEPTIONS": "yes"}, "must be a bool"),
])
def test_refused_options_name_what_to_use(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=needle) as info:
        DjangoCache("redis://127.0.0.1:1/0", {"OPTIONS": options})
    assert isinstance(info.value, ConfigurationError)


def test_mapped_options_reach_the_service() -> None:
    built = DjangoCache("redis://127.0.0.1:1/0", {"OPTIONS": {
        **DJANGO_REDIS_OPTIONS, "CLOSE_CONNECTION": False, "PASSWORD": "pw",
        "REVERSE_KEY_FUNCTION": "django_redis.util.default_reverse_key"}})
    assert built.service.stats() is not None
    assert cache is not None  # the app's proxy imports


def test_the_async_twins_are_native() -> None:
    """Every a* twin of the django-redis API awaits the AsyncCacheService (no thread)."""
    import inspect

    for name in ("attl", "apttl", "aexpire", "apexpire", "aexpire_at", "apexpire_at",
                 "apersist", "akeys", "adelete_pattern", "aincr", "aset"):
        assert inspect.iscoroutinefunction(getattr(DjangoCache, name)), name
    assert inspect.isasyncgenfunction(DjangoCache.aiter_keys)
