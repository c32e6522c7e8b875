"""The framework backends beyond the frameworks' own suites: bad input, Django's native async
methods, namespaces, signing keys, the dogpile mutex across an outage."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest

from cache_service import ConfigurationError
from tests.peer.harness import refused_url
from tests.servers import RedisServer

django = pytest.importorskip("django")
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(SECRET_KEY="integration-tests-secret-key-0123456789", USE_TZ=True, CACHES={})

from django.core.cache.backends.base import BaseCache  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

from cache_service.integrations.cachelib import CachelibCache  # noqa: E402
from cache_service.integrations.django import DjangoCache  # noqa: E402

KEY = "integration-signing-key-0123456789"


def django_cache(location: Any, **params: Any) -> DjangoCache:
    return DjangoCache(location, params)


# -- bad input fails at startup, naming the setting ------------------------------------------
@pytest.mark.parametrize(("location", "options", "needle"), [
    ("http://localhost:6379", {}, "CACHES LOCATION"),
    ("", {}, "CACHES LOCATION"),
    (["redis://a:1/0", "redis://b:2/0"], {}, "CACHES LOCATION: one Redis URL"),
    ("redis:/oops", {"socket_timeout": 1}, "CACHES LOCATION: url must start with"),
    ("redis://localhost:1/0", {"socket_timout": 1},
     "CACHES OPTIONS: unknown option 'socket_timout'"),
    ("redis://localhost:1/0", {"socket_timeout": -1}, "CACHES OPTIONS: socket_timeout"),
    ("redis://localhost:1/0", {"SIGNING_KEY": "short"}, r"OPTIONS\[.SIGNING_KEY.\]: a signing key"),
    ("redis://localhost:1/0", {"codec": object()}, "codec must be a PickleCodec"),
])
def test_django_bad_settings(location: Any, options: dict[str, Any], needle: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=needle) as info:
        django_cache(location, OPTIONS=options)
    assert isinstance(info.value, ConfigurationError)


def test_django_needs_a_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "SECRET_KEY", "")
    with pytest.raises(ImproperlyConfigured, match="signing key is needed"):
        django_cache("memory://")
    assert django_cache("memory://", OPTIONS={"SIGNING_KEY": KEY}).get("x") is None


def test_cachelib_and_dogpile_bad_settings() -> None:
    pytest.importorskip("dogpile.cache")
    from dogpile.cache import make_region

    with pytest.raises(ConfigurationError, match=r"CachelibCache\(url=...\)"):
        CachelibCache("nope://x", signing_key=KEY)
    with pytest.raises(ConfigurationError, match="signing key"):
        CachelibCache("memory://")
    with pytest.raises(ConfigurationError, match="unknown option 'bogus'"):
        CachelibCache("memory://", signing_key=KEY, bogus=1)
    with pytest.raises(ConfigurationError, match=r"dogpile arguments\['url'\]"):
        make_region().configure("cache_service", arguments={"signing_key": KEY})
    with pytest.raises(ConfigurationError, match="redis_expiration_time"):
        make_region().configure("cache_service", arguments={
            "url": "memory://", "signing_key": KEY, "redis_expiration_time": -1})
    with pytest.warns(UserWarning, match="ignoring unknown arguments"):
        make_region().configure("cache_service", arguments={
            "url": "memory://", "signing_key": KEY, "socket_timout": 1})


def test_flask_bad_url_names_the_setting() -> None:
    pytest.importorskip("flask_caching")
    from flask import Flask
    from flask_caching import Cache

    app = Flask("bad")
    app.config.update(SECRET_KEY="bad-url-test-secret-0123456789abcdef",
                      CACHE_REDIS_URL="redis:/oops",
                      CACHE_TYPE="cache_service.integrations.flask.make_cache")
    with pytest.raises(ConfigurationError, match="CACHE_REDIS_URL"):
        Cache(app)
    app.config.pop("CACHE_REDIS_URL")
    with pytest.raises(ConfigurationError, match="CACHE_REDIS_URL: the cache's location"):
        Cache(app)
    app.config.update(CACHE_REDIS_URL="memory://", CACHE_OPTIONS={"bogus": 1})
    with pytest.raises(ConfigurationError, match="CACHE_OPTIONS: unknown option 'bogus'"):
        Cache(app)
    app.config.update(CACHE_OPTIONS={}, CACHE_ARGS=[60])
    with pytest.raises(ConfigurationError, match="CACHE_ARGS: this backend takes no"):
        Cache(app)


def test_flask_old_cache_type_path_names_the_factory() -> None:
    """The pre-factory ``CACHE_TYPE`` fails at ``Cache(app)``, naming the path to use now."""
    pytest.importorskip("flask_caching")
    from flask import Flask
    from flask_caching import Cache

    app = Flask("old")
    app.config.update(SECRET_KEY="old-path-test-secret-0123456789abcdef",
                      CACHE_REDIS_URL="memory://",
                      CACHE_TYPE="cache_service.integrations.cachelib.CachelibCache")
    with pytest.raises(ConfigurationError,
                       match=r"CACHE_TYPE = 'cache_service\.integrations\.flask\.make_cache'"):
        Cache(app)


# -- Django: native async methods, namespaces -------------------------------------------------
def test_django_async_methods_are_native() -> None:
    for name in ("aget", "aset", "aadd", "atouch", "adelete", "aget_many", "ahas_key", "aincr",
                 "aset_many", "adelete_many", "aclear"):
        assert getattr(DjangoCache, name) is not getattr(BaseCache, name), name


@pytest.mark.parametrize("up", [True, False], ids=["redis-up", "redis-refused"])
def test_django_async_api(redis_server: RedisServer, up: bool) -> None:
    url = redis_server.url if up else refused_url()
    cache = django_cache(url, KEY_PREFIX=f"async-{up}", TIMEOUT=60)

    async def scenario() -> None:
        await cache.aclear()
        await cache.aset("a", {"x": (1, 2)})
        assert await cache.aget("a") == {"x": (1, 2)}
        assert await cache.aadd("a", 0) is False
        assert await cache.aadd("n", 10) is True
        assert await cache.aincr("n", 5) == 15
        assert await cache.adecr("n") == 14
        with pytest.raises(ValueError, match="not found"):
            await cache.aincr("missing")
        await cache.aset_many({"b": 2, "c": 3}, timeout=None)
        assert await cache.aget_many(["a", "b", "c", "zz"]) == {
            "a": {"x": (1, 2)}, "b": 2, "c": 3}
        assert await cache.atouch("b", 0) is True  # 0: expire now
        assert await cache.ahas_key("b") is False
        await cache.aset("gone", 1, timeout=0)  # 0: don't cache
        assert await cache.aget("gone", "default") == "default"
        assert await cache.aget_or_set("g", lambda: "made") == "made"
        assert await cache.aincr_version("c") == 2
        assert await cache.aget("c", version=2) == 3
        assert await cache.adelete("a") is True
        await cache.adelete_many(["c", "g"])
        assert await cache.aget_many(["a", "g"]) == {}
        await cache._aservice.aclose()

    asyncio.run(scenario())
    assert cache.service.is_redis_available() is up


def test_django_clear_is_scoped(redis_server: RedisServer) -> None:
    one = django_cache(redis_server.url, KEY_PREFIX="one")
    two = django_cache(redis_server.url, KEY_PREFIX="two/words")  # hashed into a namespace
    client = redis_server.client()
    client.set("foreign-key", b"x")
    one.set("k", 1)
    two.set("k", 2)
    one.clear()
    assert one.get("k") is None
    assert two.get("k") == 2
    assert client.get("foreign-key") == b"x"


def test_django_values_are_signed_pickle(redis_server: RedisServer) -> None:
    cache = django_cache(redis_server.url, KEY_PREFIX="signed")
    cache.set("obj", ValueError("boom"))
    (name,) = redis_server.client().keys("cs:django:signed::*obj")
    raw = redis_server.client().get(name)
    assert raw[2] == 3  # codec id 3: HMAC-signed pickle
    tampered = raw[:-1] + bytes([raw[-1] ^ 1])
    redis_server.client().set(name, tampered)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cache.get("obj", "miss") == "miss"  # a bad signature is a miss, never unpickled


# -- dogpile: the mutex through an outage -----------------------------------------------------
def test_dogpile_mutex_redis_then_process(fresh_redis_server: RedisServer) -> None:
    pytest.importorskip("dogpile.cache")
    from dogpile.cache import make_region

    region = make_region().configure("cache_service", arguments={
        "url": fresh_redis_server.url, "signing_key": KEY, "fallback": "process",
        "lock_timeout": 5})
    mutex = region.backend.get_mutex("k")
    assert mutex.acquire()
    assert fresh_redis_server.client().keys("cs::lock:dogpile::k")  # held in Redis
    assert not region.backend.get_mutex("k").acquire(False)
    mutex.release()
    assert not fresh_redis_server.client().keys("cs::lock:dogpile::k")
    fresh_redis_server.kill()
    other = region.backend.get_mutex("k")
    assert other.acquire()  # Redis out: the process lock alone, still exclusive here
    assert not region.backend.get_mutex("k").acquire(False)
    other.release()
    region.set("v", 1)
    assert region.get("v") == 1


def test_django_oversized_values_are_not_cached(redis_server: RedisServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    cache = django_cache(redis_server.url, KEY_PREFIX="big",
                         OPTIONS={"max_value_bytes": 1024})
    big = "x" * 2000
    cache.set("k", "small")
    cache.set("k", big)  # not stored, and the older value is gone rather than served
    assert cache.get("k") is None
    assert "not cached" in caplog.text
    assert cache.add("k", big) is False
    assert cache.set_many({"a": 1, "b": big}) == ["a", "b"]
    assert cache.get_many(["a", "b"]) == {}

    async def scenario() -> None:
        await cache.aset("k", "small")
        await cache.aset("k", big)
        assert await cache.aget("k") is None
        await cache._aservice.aclose()

    asyncio.run(scenario())


def test_cachelib_and_dogpile_oversized_values(redis_server: RedisServer) -> None:
    pytest.importorskip("dogpile.cache")
    from dogpile.cache import make_region
    from dogpile.cache.api import NO_VALUE

    big = "x" * 2000
    cache = CachelibCache(redis_server.url, key_prefix="big:", signing_key=KEY,
                          max_value_bytes=1024)
    assert cache.set("k", "small") is True
    assert cache.set("k", big) is False
    assert cache.get("k") is None
    assert cache.add("k", big) is False
    assert cache.set_many({"a": 1, "b": big}) == []
    region = make_region().configure("cache_service", arguments={
        "url": redis_server.url, "signing_key": KEY, "prefix": "dogpile-big",
        "max_value_bytes": 1024})
    assert region.get_or_create("k", lambda: big) == big  # computed, served, not cached
    assert region.get("k") is NO_VALUE
    assert not region.backend.service.exists("k")


def test_flask_caching_factory_protocol(redis_server: RedisServer) -> None:
    pytest.importorskip("flask_caching")
    from flask import Flask
    from flask_caching import Cache

    app = Flask("factory")
    app.config.update(SECRET_KEY="factory-secret-key-0123456789abcdef",
                      CACHE_TYPE="cache_service.integrations.flask.make_cache",
                      CACHE_REDIS_URL=redis_server.url, CACHE_KEY_PREFIX="factory:",
                      CACHE_DEFAULT_TIMEOUT=30)
    cache = Cache(app)
    with app.app_context():
        cache.set("k", {"v": (1, 2)})
        assert cache.get("k") == {"v": (1, 2)}
    backend = app.extensions["cache"][cache]
    assert isinstance(backend, CachelibCache)
    assert backend.default_timeout == 30
    assert redis_server.client().keys("cs:cachelib::factory:k")


def test_framework_backends_take_the_near_cache(fresh_redis_server: RedisServer) -> None:
    """``near_cache`` passes through OPTIONS like any service option; hits then do no I/O and
    another client's delete still reaches them."""
    from .helpers import eventually
    django = django_cache(fresh_redis_server.url, OPTIONS={"near_cache": True})
    flask = CachelibCache(fresh_redis_server.url, signing_key=KEY, near_cache=True)
    for cache in (django, flask):
        cache.set("page", {"html": "<p>hi</p>"})

    def near_hits() -> int:
        return int(django._service.stats()["target"]["near_hits"])

    eventually(lambda: django.get("page") == {"html": "<p>hi</p>"} and near_hits() > 0
               and flask.get("page") == {"html": "<p>hi</p>"} and near_hits() > 1,
               timeout=10)
    with fresh_redis_server.client() as raw:
        for key in raw.scan_iter(match="*page*"):
            raw.delete(key)
    eventually(lambda: django.get("page") is None and flask.get("page") is None, timeout=2)
