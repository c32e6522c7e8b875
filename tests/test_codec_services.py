"""The codec options on real services and framework backends (issue 19): values round trip
through every operation with compression and encryption on, on Redis and on the memory
fallback; a change of settings keeps old values readable; tampered, foreign-key and bomb values
in Redis are misses (counted, removed or left as they should be); keys rotate across services;
Django, Flask-Caching and dogpile take the options (django-redis' names too)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from datetime import date
from typing import Any

import pytest

from cache_service import CacheService, ConfigurationError, PickleCodec
from cache_service.aio import AsyncCacheService
from cache_service.codec import SEALED, codec_name

from .helpers import unique
from .servers import RedisServer

KEY_A = secrets.token_hex(32)
KEY_B = secrets.token_hex(32)
SIGNING = "codec-services signing key 0123456789"
DOC = {"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(200)],
       "when": date(2026, 12, 6), "pair": (1, 2), "id": uuid.UUID(int=7)}
OPTIONS: list[dict[str, Any]] = [
    {"compression": "zstd"},
    {"serializer": "msgpack", "compression": "lz4"},
    {"compression": "zlib", "encryption_keys": [KEY_A]},
    {"serializer": "msgpack", "compression": "zstd", "encryption_keys": KEY_A},
    {"codec": PickleCodec(SIGNING), "compression": "zstd", "encryption_keys": [KEY_A]},
]


def raw_of(server: RedisServer, service: CacheService, key: str) -> bytes | None:
    found: bytes | None = server.client().get(service.full_key(key))
    return found


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(
    str(v)[:8] for k, v in sorted(o.items()) if k != "encryption_keys") + (
    "-aes" if "encryption_keys" in o else ""))
def test_every_operation_round_trips(redis_server: RedisServer, options: dict[str, Any]) -> None:
    cache = CacheService(unique("codec"), url=redis_server.url, **options)
    cache.set("doc", DOC)
    assert cache.get("doc") == DOC
    raw = raw_of(redis_server, cache, "doc")
    assert raw is not None
    assert len(raw) < 2000  # compressed (the JSON is ~9 KB)
    assert bool(raw[2] & SEALED) == ("encryption_keys" in options)
    cache.set_many({"a": DOC, "b": [1, 2]}, tags=["t"])
    assert cache.get_many(["a", "b", "c"]) == {"a": DOC, "b": [1, 2]}
    assert cache.add("a", 5) is False
    assert cache.get_or_set("gs", lambda: DOC, stale_while_revalidate=5) == DOC
    assert cache.get_or_set("gs", lambda: None) == DOC
    cache.set("tagged", DOC, tags=["t"])
    assert cache.get("tagged") == DOC
    cache.invalidate_tags("t")
    assert cache.get("tagged") is None
    assert cache.get("a") is None
    assert cache.incr("n", 5) == 5
    assert cache.get("n") == 5
    cache.set("m", 7)  # an int set is a counter, whatever the stages
    assert cache.incr("m") == 8
    assert cache.exists("doc")
    memory = CacheService(unique("codec"), url="memory://", **options)
    memory.set("doc", DOC)
    assert memory.get("doc") == DOC
    near = CacheService(cache.prefix, url=redis_server.url, near_cache=True, **options)
    assert near.get("doc") == DOC
    assert near.get("doc") == DOC


def test_async_service_takes_the_options(redis_server: RedisServer) -> None:
    async def main() -> None:
        async with AsyncCacheService(unique("acodec"), url=redis_server.url,
                                     compression="zstd", encryption_keys=[KEY_A]) as cache:
            await cache.set("doc", DOC)
            assert await cache.get("doc") == DOC
            assert await cache.get_many(["doc"]) == {"doc": DOC}

    asyncio.run(main())


def test_old_values_stay_readable_after_a_change_of_settings(redis_server: RedisServer) -> None:
    prefix = unique("change")
    before = CacheService(prefix, url=redis_server.url)
    before.set("old", DOC)
    before.set("small", {"a": 1})
    after = CacheService(prefix, url=redis_server.url, serializer="msgpack", compression="zstd",
                         encryption_keys=[KEY_A])
    assert after.get("old") == DOC
    assert after.get_many(["old", "small"]) == {"old": DOC, "small": {"a": 1}}
    after.set("new", DOC)
    after.set("plain", "x" * 5000)
    assert codec_name(raw_of(redis_server, after, "plain")[2]) == "msgpack+zstd+aes-gcm"  # type: ignore[index]
    # the service without options: encrypted values are another service's, a miss left alone
    assert before.get("new") is None
    assert raw_of(redis_server, before, "new") is not None
    assert before.add("new", 1) is False  # another service's live value: not replaced
    # without encryption, compressed msgpack is readable by the service with no options
    squeezed = CacheService(prefix, url=redis_server.url, serializer="msgpack",
                            compression="zstd")
    squeezed.set("shared", DOC)
    assert before.get("shared") == DOC


def test_tampered_and_bomb_values_are_misses_counted_and_removed(
        redis_server: RedisServer) -> None:
    cache = CacheService(unique("tamper"), url=redis_server.url, compression="zstd",
                         encryption_keys=[KEY_A], max_value_bytes=100_000)
    cache.set("doc", DOC)
    client = redis_server.client()
    raw = raw_of(redis_server, cache, "doc")
    assert raw is not None
    client.set(cache.full_key("doc"), raw[:-1] + bytes([raw[-1] ^ 1]))
    assert cache.get("doc") is None
    assert raw_of(redis_server, cache, "doc") is None  # removed
    client.set(cache.full_key("moved"), raw)  # a value copied to another key
    assert cache.get("moved") is None
    stats = cache.stats()
    assert stats["codec"]["auth_failures"] == 2
    assert stats["target"]["corrupt"] >= 2
    big = CacheService(cache.prefix, url=redis_server.url, compression="zstd",
                       encryption_keys=[KEY_A], max_value_bytes=10_000_000)
    big.set("bomb", "a" * 5_000_000)
    assert len(raw_of(redis_server, big, "bomb") or b"") < 100_000
    assert cache.get("bomb") is None  # inflates past this service's max_value_bytes
    assert raw_of(redis_server, cache, "bomb") is None


def test_the_get_fast_path_of_a_pipeline_treats_refused_payloads_as_the_slow_path(
        redis_server: RedisServer) -> None:
    prefix = unique("refused")
    cache = CacheService(prefix, url=redis_server.url, serializer="msgpack",
                         compression="zstd", encryption_keys=[KEY_A])
    other = CacheService(prefix, url=redis_server.url, codec=PickleCodec(SIGNING),
                         compression="zstd")
    client = redis_server.client()
    client.set(cache.full_key("foreign"), b"not ours")
    other.set("pickled", [complex(1, 2)] * 500)  # signed pickle + zstd: no key for it here
    cache.set("corrupt", DOC)
    raw = raw_of(redis_server, cache, "corrupt") or b""
    client.set(cache.full_key("corrupt"), raw[:40])
    for key in ("foreign", "pickled", "corrupt"):
        assert cache.get(key, "d") == "d"
    assert raw_of(redis_server, cache, "foreign") == b"not ours"  # left alone
    assert raw_of(redis_server, cache, "pickled") is not None  # another service's codec
    assert raw_of(redis_server, cache, "corrupt") is None  # removed
    assert cache.stats()["misses"] == 3
    assert cache.stats()["codec"] == {"auth_failures": 0, "unknown_keys": 0}


def test_a_large_plain_json_value_is_read_in_place_exactly(redis_server: RedisServer) -> None:
    cache = CacheService(unique("plain"), url=redis_server.url)
    for value in ({"text": "é" * 5000, "n": [1.5, None, True]}, ["x" * 4085], "y" * 4093):
        cache.set("v", value)
        assert cache.get("v") == value
        raw = raw_of(redis_server, cache, "v") or b""
        assert raw[2] == 1  # plain JSON
        assert len(raw) >= 4096  # past the view threshold
    redis_server.client().set(cache.full_key("v"), raw[:-2] + b"!!")
    assert cache.get("v", "d") == "d"
    assert raw_of(redis_server, cache, "v") is None  # corrupt: removed


def test_key_rotation_across_services(redis_server: RedisServer) -> None:
    prefix = unique("rotate")
    old = CacheService(prefix, url=redis_server.url, encryption_keys=[KEY_A])
    old.set("v", DOC)
    rotated = CacheService(prefix, url=redis_server.url, encryption_keys=f"{KEY_B},{KEY_A}")
    assert rotated.get("v") == DOC
    rotated.set("w", DOC)
    retired = CacheService(prefix, url=redis_server.url, encryption_keys=[KEY_B])
    assert retired.get("w") == DOC
    assert retired.get("v") is None  # the retired key's value: a miss, left to expire
    assert raw_of(redis_server, retired, "v") is not None
    assert retired.stats()["codec"]["unknown_keys"] == 1


def test_keys_from_the_environment(redis_server: RedisServer,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_TEST_ENCRYPTION_KEYS", KEY_A)
    cache = CacheService(unique("env"), url=redis_server.url,
                         encryption_keys_env="CACHE_TEST_ENCRYPTION_KEYS")
    cache.set("v", [1])
    assert CacheService(cache.prefix, url=redis_server.url, encryption_keys=KEY_A).get("v") == [1]


# -- framework backends ---------------------------------------------------------------------
django = pytest.importorskip("django")
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(SECRET_KEY="codec-services-secret-key-0123456789abcdef", USE_TZ=True,
                       CACHES={})

from cache_service.integrations.cachelib import CachelibCache  # noqa: E402
from cache_service.integrations.django import DjangoCache  # noqa: E402


def test_django_takes_django_redis_option_names(redis_server: RedisServer) -> None:
    cache = DjangoCache(redis_server.url, {"KEY_PREFIX": unique("dj"), "OPTIONS": {
        "SIGNING_KEY": SIGNING,
        "COMPRESSOR": "django_redis.compressors.zstd.ZStdCompressor",
        "ENCRYPTION_KEYS": [KEY_A]}})
    value = {"obj": complex(1, 2), "doc": DOC}  # pickled: any Python object
    cache.set("k", value)
    assert cache.get("k") == value
    as_json = DjangoCache(redis_server.url, {"KEY_PREFIX": unique("dj"), "OPTIONS": {
        "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
        "COMPRESSOR": "django_redis.compressors.zlib.ZlibCompressor"}})
    as_json.set("k", DOC)
    assert as_json.get("k") == DOC
    with pytest.raises(ConfigurationError, match="compression must be one of"):
        DjangoCache(redis_server.url, {"OPTIONS": {
            "COMPRESSOR": "django_redis.compressors.lzma.LzmaCompressor"}})
    with pytest.raises(ConfigurationError, match="serializer must be one of"):
        DjangoCache(redis_server.url, {"OPTIONS": {"SERIALIZER": "yaml"}})


def test_cachelib_and_dogpile_take_the_options(redis_server: RedisServer) -> None:
    pytest.importorskip("dogpile.cache")
    from dogpile.cache import make_region

    cache = CachelibCache(redis_server.url, key_prefix=unique("cl") + ":", signing_key=SIGNING,
                          compression="lz4", encryption_keys=[KEY_A])
    assert cache.set("k", DOC) is True
    assert cache.get("k") == DOC
    msgpack = CachelibCache(redis_server.url, key_prefix=unique("cl") + ":",
                            serializer="msgpack", compression="zstd")
    assert msgpack.set("k", DOC) is True
    assert msgpack.get("k") == DOC
    region = make_region().configure("cache_service", arguments={
        "url": redis_server.url, "signing_key": SIGNING, "prefix": unique("dp"),
        "compression": "zstd", "encryption_keys": [KEY_A]})
    assert region.get_or_create("k", lambda: DOC) == DOC
    assert region.get("k") == DOC
    with pytest.raises(ConfigurationError, match="CachedValue"):
        make_region().configure("cache_service", arguments={
            "url": redis_server.url, "signing_key": SIGNING, "serializer": "json"})


def test_get_or_set_waiters_share_copies(redis_server: RedisServer) -> None:
    import threading
    import time

    cache = CacheService(unique("flight"), url=redis_server.url, serializer="msgpack",
                         compression="zstd", encryption_keys=[KEY_A])
    calls: list[int] = []

    def load() -> Any:
        calls.append(1)
        time.sleep(0.2)
        return DOC

    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_set("k", load)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    assert results == [DOC] * 4
    assert len({id(r) for r in results}) == 4  # each caller its own copy


def test_any_bytes_under_a_pipeline_service_are_a_value_or_a_miss(
        redis_server: RedisServer) -> None:
    import zlib

    import zstandard
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from cache_service import NotAnIntegerError
    from cache_service.codec import MAGIC

    cache = CacheService(unique("fuzz"), url=redis_server.url, serializer="msgpack",
                         compression="zstd", encryption_keys=[KEY_A], max_value_bytes=4096)
    plain = CacheService(cache.prefix, url=redis_server.url)
    client = redis_server.client()
    bodies = st.one_of(
        st.binary(max_size=64),
        st.binary(max_size=64).map(zlib.compress),
        st.binary(max_size=64).map(zstandard.ZstdCompressor().compress),
        st.just(zstandard.ZstdCompressor().compress(b"\x00" * 100_000)),
        st.just(zlib.compress(b"\x00" * 100_000)),
    )
    payloads = st.builds(lambda cid, body: MAGIC + bytes([cid]) + bytes(8) + body,
                         st.integers(0, 255), bodies)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(raw=payloads)
    def check(raw: bytes) -> None:
        for service in (cache, plain):
            client.set(service.full_key("k"), raw)
            service.get("k")
            service.get_many(["k"])
            service.exists("k")
            client.set(service.full_key("k"), raw)
            with contextlib.suppress(NotAnIntegerError):
                service.incr("k")
            client.set(service.full_key("k"), raw)
            service.add("k", 1)

    check()
    assert cache.stats()["target"]["errors"] == 0
