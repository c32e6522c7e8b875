"""Behaviour only a real Redis shows: key layout, foreign data, SCAN-only invalidation."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from cache_service import CacheService, PickleCodec, notices

from .helpers import unique


@pytest.fixture
def raw(redis_server: Any) -> redis.Redis:
    """A plain redis-py client to the suite's server."""
    client: redis.Redis = redis_server.client()
    return client


@pytest.fixture
def svc(redis_server: Any) -> CacheService:
    """A service with a unique prefix on the suite's server."""
    return CacheService(unique(), url=redis_server.url)


def test_values_live_under_namespaced_keys_with_a_header(svc: CacheService,
                                                         raw: redis.Redis) -> None:
    svc.set("user:123", {"a": 1}, ttl=100)
    stored = raw.get(f"cs:{svc.prefix}::user:123")
    assert stored is not None
    assert stored[:2] == b"\xc5\x01"
    assert 99_000 < raw.pttl(f"cs:{svc.prefix}::user:123") <= 100_000


@pytest.mark.parametrize("junk", [b"\xc5\x01\x01" + b"\x00" * 8 + b"{bad json",
                                  b"\xc5\x01\x09" + b"\x00" * 8 + b"{}"])
def test_corrupt_payload_is_a_miss_and_removed(
        svc: CacheService, raw: redis.Redis, junk: bytes, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notices, "_last", {})
    key = svc.full_key("k")
    raw.set(key, junk)
    assert svc.get("k", default="miss") == "miss"
    assert raw.exists(key) == 0
    said = [r.getMessage() for r in caplog.records if "unreadable payload" in r.getMessage()]
    assert len(said) == 1
    assert key not in said[0]  # keys never reach the log whole
    assert svc.stats()["target"]["corrupt"] >= 1


@pytest.mark.parametrize("junk", [b"plain text", b"", b"\xc5\x01short"])
def test_foreign_string_is_a_miss_and_left_alone(
        svc: CacheService, raw: redis.Redis, junk: bytes, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notices, "_last", {})
    key = svc.full_key("k")
    raw.set(key, junk)
    for _ in range(3):
        assert svc.get("k", default="miss") == "miss"
    assert raw.get(key) == junk
    said = [r.getMessage() for r in caplog.records if "not a value of ours" in r.getMessage()]
    assert len(said) == 1  # rate-limited
    assert key not in said[0]
    assert svc.stats()["target"]["corrupt"] >= 3
    assert svc.add("k", 1) is False  # add agrees: not ours to replace
    assert raw.get(key) == junk


def test_wrong_type_at_our_key_is_a_miss_and_left_alone(svc: CacheService,
                                                        raw: redis.Redis) -> None:
    raw.hset(svc.full_key("h"), "f", "v")
    assert svc.get("h") is None
    assert raw.hget(svc.full_key("h"), "f") == b"v"
    raw.delete(svc.full_key("h"))
    svc.set("h", 1)
    assert svc.get("h") == 1


def test_clear_and_patterns_never_touch_foreign_keys(svc: CacheService,
                                                     raw: redis.Redis) -> None:
    p = svc.prefix
    foreign = {
        f"{p}:k": b"same name without our namespace",
        f"cs:{p}::foreign-string": b"no header",
        f"cs:{p}:other::k": b"\xc5\x01 other prefix",
        f"cs:{p}-x::k": b"\xc5\x01 similar prefix",
    }
    raw.mset(foreign)
    raw.rpush(f"cs:{p}::a-list", "x")
    svc.set("mine", 1)
    svc.set("k", 2)
    assert svc.invalidate_pattern("*") == 2
    svc.set("mine", 1)
    assert svc.clear_all() == 1
    for key, value in foreign.items():
        assert raw.get(key) == value
    assert raw.lrange(f"cs:{p}::a-list", 0, -1) == [b"x"]
    raw.delete(*foreign, f"cs:{p}::a-list")


def test_invalidation_uses_scan_never_keys_or_flush(redis_server: Any, raw: redis.Redis) -> None:
    svc = CacheService(unique(), url=redis_server.url)
    for i in range(2500):
        svc.set(f"k{i}", i)
    before = raw.info("commandstats")
    assert svc.invalidate_pattern("k1*") == 1111
    assert svc.clear_all() == 2500 - 1111
    after = raw.info("commandstats")
    for cmd in ("cmdstat_keys", "cmdstat_flushdb", "cmdstat_flushall"):
        assert after.get(cmd, {}).get("calls", 0) == before.get(cmd, {}).get("calls", 0)
    assert after["cmdstat_scan"]["calls"] > before.get("cmdstat_scan", {}).get("calls", 0)


def test_signed_pickle_round_trips_and_rejects_tampering(redis_server: Any,
                                                         raw: redis.Redis) -> None:
    prefix = unique()
    codec = PickleCodec(b"store-signing-key-0123456789abcdef")
    svc = CacheService(prefix, url=redis_server.url, codec=codec)

    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    svc.set("p", complex(1, 2))
    assert svc.get("p") == complex(1, 2)
    svc.set("json", {"a": 1})
    key = svc.full_key("p")
    payload = bytearray(raw.get(key) or b"")
    payload[-1] ^= 1
    raw.set(key, bytes(payload))
    assert svc.get("p") is None
    assert raw.exists(key) == 0
    # a JSON-only service sharing the prefix reads JSON entries, treats pickles as misses
    plain = CacheService(prefix, url=redis_server.url)
    assert plain.get("json") == {"a": 1}
    svc.set("p2", {1, 2})
    assert svc.get("p2") == {1, 2}
    other_key = CacheService(prefix, url=redis_server.url,
                             codec=PickleCodec(b"another-signing-key-0123456789"))
    svc.set("p3", complex(3, 4))
    assert other_key.get("p3") is None


def test_tls_and_acl(tls_server: Any) -> None:
    files = tls_server.tls
    user, password = tls_server.acl_user if tls_server.acl_user else ("default", None)
    svc = CacheService(
        unique(), url=tls_server.url, username=user if tls_server.acl_user else None,
        password=password, ssl_ca_certs=files.ca_cert, ssl_certfile=files.client_cert,
        ssl_keyfile=files.client_key,
    )
    assert svc.location.startswith("rediss://")
    assert svc.is_redis_available()
    svc.set("k", {"tls": True})
    assert svc.get("k") == {"tls": True}
    if password:
        assert password not in repr(svc)
        assert password not in str(svc.stats())


def test_wrong_credentials_fall_back_without_leaking_them(
        tls_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    files = tls_server.tls
    user, _ = tls_server.acl_user
    svc = CacheService(unique(), url=tls_server.url, username=user, password="wrong-secret-42",
                       ssl_ca_certs=files.ca_cert)
    svc.set("k", 1)
    assert svc.get("k") == 1  # served from memory; no exception reaches the caller
    assert svc.is_redis_available() is False
    text = " ".join(r.getMessage() for r in caplog.records) + repr(svc) + str(svc.stats())
    assert "wrong-secret-42" not in text
    assert "rejected the credentials" in text  # a misconfiguration, not an outage
