"""Connection-level pieces of ``redis_backend`` against real servers: what an error means
(``classify_error``), the one-line fix for a misconfiguration, TLS-mismatch diagnosis,
``unix://`` locations, and pooled connections killed under uvloop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import uvloop

from cache_service import AsyncCacheService, CacheService, ConfigurationError
from cache_service._redis.backend import (
    CONNECTIVITY_ERRORS,
    build_async_client,
    build_sync_client,
    classify_error,
    diagnose,
    misconfiguration_message,
)
from cache_service.config import Location, TargetOptions, parse_url

from .helpers import unique
from .servers import ChaosProxy, RedisServer, TLSFiles, free_port

FAIL_FAST = TargetOptions()  # the library's defaults: 0.25 s socket and connect timeouts
# redis-py's client (a standalone option): its pool of connections under uvloop
REDIS_PY = TargetOptions(connection="redis-py")


def failure(call: Callable[[], Any]) -> BaseException:
    """The exception ``call`` raises (the test fails if it raises none)."""
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("expected the call to fail")


def sync_failure(location: Location, *command: Any) -> BaseException:
    """What a fail-fast client for ``location`` raises for ``command``."""
    client = build_sync_client(location, FAIL_FAST)
    try:
        return failure(lambda: client.execute_command(*command))
    finally:
        client.close()


async def async_failure(location: Location, *command: Any) -> BaseException:
    """What a fail-fast asyncio client for ``location`` raises for ``command``."""
    client = build_async_client(location, FAIL_FAST)
    try:
        await client.execute_command(*command)
    except BaseException as exc:
        return exc
    finally:
        await client.aclose()
    raise AssertionError("expected the call to fail")


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    """A plain server with a default-user password and an ACL user, also on a unix socket."""
    with RedisServer(password="default-pw-7", acl_user=("app", "app-pw-9"), unixsocket=True,
                     name="conn-auth") as server:
        yield server


@pytest.fixture(scope="module")
def open_server() -> Iterator[RedisServer]:
    """A plain server without any password."""
    with RedisServer(name="conn-open") as server:
        yield server


# -- classify_error and misconfiguration_message ---------------------------------------------


def test_foreign_type_is_wrongtype(open_server: RedisServer) -> None:
    key = unique("foreign")
    with open_server.client() as raw:
        raw.hset(key, "f", "v")
    exc = sync_failure(parse_url(open_server.url), "GET", key)
    assert classify_error(exc) == "wrongtype"


@pytest.mark.parametrize(("url_of", "code", "hint"), [
    (lambda s: f"redis://app:not-it-42@{s.host}:{s.port}/0", "WRONGPASS", "password=/username="),
    (lambda s: f"redis://{s.host}:{s.port}/0", "NOAUTH", "set password="),
    (lambda s: f"redis://:not-it-42@{s.host}:{s.port}/0", "WRONGPASS", "password="),
])
def test_rejected_credentials_are_misconfigured(
        password_server: RedisServer, url_of: Callable[[RedisServer], str], code: str,
        hint: str) -> None:
    location = parse_url(url_of(password_server))
    exc = sync_failure(location, "GET", "k")
    assert classify_error(exc) == "misconfigured", f"{type(exc).__name__}: {exc}"
    message = misconfiguration_message(exc, location)
    assert f"({code})" in message
    assert hint in message
    assert location.describe() in message
    assert "not-it-42" not in message
    assert "\n" not in message


def test_async_rejected_credentials_are_misconfigured(password_server: RedisServer) -> None:
    location = parse_url(f"redis://app:not-it-42@{password_server.host}:{password_server.port}")

    exc = asyncio.run(async_failure(location, "GET", "k"))
    assert classify_error(exc) == "misconfigured"
    assert "(WRONGPASS)" in misconfiguration_message(exc, location)


def test_untrusted_certificate_is_misconfigured(tls_server: RedisServer) -> None:
    location = parse_url(tls_server.url)  # no ssl_ca_certs: the throw-away CA is not trusted
    exc = sync_failure(location, "PING")
    assert classify_error(exc) == "misconfigured", f"{type(exc).__name__}: {exc}"
    message = misconfiguration_message(exc, location)
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "ssl_ca_certs=" in message


def test_missing_client_certificate(tls_files: TLSFiles) -> None:
    """A server with ``tls-auth-clients yes`` alerts "certificate required" right after the
    handshake and closes. Whether a client reads that alert (misconfigured, naming
    ssl_certfile=) or a reset (broken) is a race; ``diagnose`` finds it every time."""
    with RedisServer(tls=tls_files, extra_args=["--tls-auth-clients", "yes"],
                     name="conn-mtls") as server:
        location = parse_url(f"{server.url}?ssl_ca_certs={tls_files.ca_cert}")
        for exc in (asyncio.run(async_failure(location, "PING")),
                    sync_failure(location, "PING")):
            kind = classify_error(exc)
            assert kind in ("misconfigured", "broken"), f"{type(exc).__name__}: {exc}"
            if kind == "misconfigured":
                assert "ssl_certfile=" in misconfiguration_message(exc, location)
        message = diagnose(location, FAIL_FAST)
        assert message == (f"the server at {server.host}:{server.port} requires a TLS client "
                           "certificate: set ssl_certfile= and ssl_keyfile= to one its "
                           "tls-ca-cert-file trusts")
        assert classify_error(redis.ConnectionError(message)) == "misconfigured"
        with_cert = parse_url(f"{server.url}?ssl_ca_certs={tls_files.ca_cert}"
                              f"&ssl_certfile={tls_files.client_cert}"
                              f"&ssl_keyfile={tls_files.client_key}")
        assert diagnose(with_cert, FAIL_FAST) is None
        client = build_sync_client(with_cert, FAIL_FAST)
        assert client.ping() is True
        client.close()


def test_refused_hung_readonly_and_noreplicas(open_server: RedisServer) -> None:
    """Refused and hung are outages; READONLY and NOREPLICAS are the primary moving on
    Sentinel and Cluster (outages), a reply to that request on a standalone location."""
    refused = sync_failure(parse_url(f"redis://127.0.0.1:{free_port()}/0"), "PING")
    assert classify_error(refused) == "outage"
    with RedisServer(name="conn-replica") as replica:
        with replica.client() as raw:
            raw.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        readonly = sync_failure(parse_url(replica.url), "SET", "k", "v")
        assert classify_error(readonly) == "denied", repr(readonly)
        assert classify_error(readonly, "sentinel") == "outage", repr(readonly)
        with replica.client() as raw:
            raw.execute_command("REPLICAOF", "NO", "ONE")
            raw.config_set("min-replicas-to-write", 1)
        noreplicas = sync_failure(parse_url(replica.url), "SET", "k", "v")
        assert str(noreplicas).startswith("NOREPLICAS")
        assert classify_error(noreplicas) == "reply"
        assert classify_error(noreplicas, "cluster") == "outage"
        replica.freeze()
        hung = sync_failure(parse_url(replica.url), "PING")
        replica.thaw()
        assert classify_error(hung) == "outage"


def test_sentinels_without_a_primary_are_an_outage() -> None:
    dead = ",".join(f"127.0.0.1:{free_port()}" for _ in range(2))
    location = parse_url(f"redis+sentinel://{dead}/mymaster/0")
    exc = sync_failure(location, "PING")
    assert type(exc).__name__ == "MasterNotFoundError"
    assert classify_error(exc) == "outage"


def test_a_killed_pooled_connection_is_broken(open_server: RedisServer) -> None:
    async def main() -> BaseException:
        client = build_async_client(parse_url(open_server.url), FAIL_FAST)
        try:
            await asyncio.gather(*(client.ping() for _ in range(3)))
            with open_server.client() as admin:
                admin.client_kill_filter(_type="normal")
            try:
                await client.get("k")
            except CONNECTIVITY_ERRORS as exc:
                assert await client.ping() is True  # a fresh connection works at once
                return exc
            raise AssertionError("expected the killed connection to fail")
        finally:
            await client.aclose()

    exc = asyncio.run(main())
    assert classify_error(exc) == "broken", f"{type(exc).__name__}: {exc}"


# -- uvloop -----------------------------------------------------------------------------------


def killed_under_uvloop(url: str, kill: Callable[[], None]) -> BaseException | None:
    """Under uvloop: fill the pool of a redis-py ``build_async_client`` client, ``kill`` its
    idle connections, and return what the next GET raises, or None when the client absorbed the
    loss itself (redis-py >= 8.2 does); either way a later call works."""

    async def main() -> BaseException | None:
        client = build_async_client(parse_url(url), REDIS_PY)
        try:
            await asyncio.gather(*(client.ping() for _ in range(4)))
            kill()
            await asyncio.sleep(0.05)  # let the loop see the close or reset
            try:
                assert await client.get("k") is None
            except BaseException as exc:  # the test checks it is a connectivity error
                assert await client.ping() is True
                return exc
            assert await client.ping() is True
            return None
        finally:
            await client.aclose()

    return uvloop.run(main())


def test_uvloop_client_kill_is_a_broken_connectivity_error(open_server: RedisServer) -> None:
    def kill() -> None:
        with open_server.client() as admin:
            assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal") >= 4

    exc = killed_under_uvloop(open_server.url, kill)
    if exc is not None:
        assert isinstance(exc, CONNECTIVITY_ERRORS), f"{type(exc).__name__}: {exc}"
        assert classify_error(exc) == "broken", f"{type(exc).__name__}: {exc}"


def test_uvloop_reset_connection_raises_runtime_error_classified_broken(
        chaos_proxy: ChaosProxy) -> None:
    """A RST on an idle pooled connection: uvloop's closed transport raises RuntimeError
    from the write, which must count as a connectivity error, and as "broken" (unless the
    client reconnects by itself)."""
    exc = killed_under_uvloop(chaos_proxy.url, chaos_proxy.reset_connections)
    if exc is not None:
        assert isinstance(exc, CONNECTIVITY_ERRORS), f"{type(exc).__name__}: {exc}"
        assert classify_error(exc) == "broken", f"{type(exc).__name__}: {exc}"


# -- diagnose ---------------------------------------------------------------------------------


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def test_tls_location_of_a_plain_server(open_server: RedisServer,
                                        password_server: RedisServer) -> None:
    for server in (open_server, password_server):  # +PONG, and -NOAUTH
        location = parse_url(f"rediss://{server.host}:{server.port}/0")
        exc = sync_failure(location, "PING")
        assert classify_error(exc) == "outage"  # the TLS handshake timed out
        message, took = timed(lambda loc=location: diagnose(loc, FAIL_FAST))
        assert message == (f"the server at {server.host}:{server.port} does not speak TLS: "
                           "use redis:// (or ssl=False)")
        assert took < 1.0
        assert classify_error(redis.ConnectionError(message)) == "misconfigured"


def test_plain_location_of_a_tls_server(tls_server: RedisServer) -> None:
    location = parse_url(f"redis://{tls_server.host}:{tls_server.port}/0")
    exc = sync_failure(location, "PING")
    assert classify_error(exc) in ("broken", "outage")  # reset or timed out, by the TLS server
    message, took = timed(lambda: diagnose(location, FAIL_FAST))
    assert message == (f"the server at {tls_server.host}:{tls_server.port} speaks TLS: use "
                       "rediss:// (and ssl_ca_certs=...)")
    assert took < 1.0
    cluster = parse_url(f"redis+cluster://{tls_server.host}:{tls_server.port}")
    assert "use rediss+cluster://" in (diagnose(cluster, FAIL_FAST) or "")


def test_nothing_learned_from_matching_hung_or_dead_servers(
        open_server: RedisServer, tls_server: RedisServer, tls_files: TLSFiles) -> None:
    tls = parse_url(f"{tls_server.url}?ssl_ca_certs={tls_files.ca_cert}")
    assert diagnose(tls, FAIL_FAST) is None
    assert diagnose(parse_url(open_server.url), FAIL_FAST) is None
    assert diagnose(parse_url(f"redis://127.0.0.1:{free_port()}"), FAIL_FAST) is None
    assert diagnose(parse_url(f"rediss://127.0.0.1:{free_port()}"), FAIL_FAST) is None
    with RedisServer(name="conn-hung") as hung:
        hung.freeze()
        for url in (hung.url, hung.url.replace("redis://", "rediss://")):
            message, took = timed(lambda u=url: diagnose(parse_url(u), FAIL_FAST))
            assert message is None
            assert took < 1.5  # connect + one socket timeout


# -- unix:// ----------------------------------------------------------------------------------


def test_unix_urls_parse_without_showing_secrets() -> None:
    plain = parse_url("unix:///run/redis/redis.sock")
    assert (plain.kind, plain.unix_socket, plain.db, plain.hosts) == (
        "standalone", "/run/redis/redis.sock", 0, ())
    query = parse_url("unix:///run/redis.sock?db=2&password=s%40cret")
    assert (query.db, query.password, query.username) == (2, "s@cret", None)
    userinfo = parse_url("unix://alice:pw-1@/run/redis.sock?db=3")
    assert (userinfo.username, userinfo.password, userinfo.db) == ("alice", "pw-1", 3)
    assert userinfo.describe() == "unix://alice:***@/run/redis.sock?db=3"
    assert query.describe() == "unix://***@/run/redis.sock?db=2"
    assert "s@cret" not in repr(query)


@pytest.mark.parametrize(("url", "match"), [
    ("unix://relative/redis.sock", "absolute socket path"),
    ("unix://", "absolute socket path"),
    ("unix:///run/redis.sock?db=x", "db must be an integer"),
    ("unix:///run/redis.sock?ssl_ca_certs=/ca", "only db=, password= and username="),
    ("unx:///run/redis.sock", "unix://"),
])
def test_bad_unix_urls_say_what_is_allowed(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        CacheService("p", url=url)


def test_unix_socket_with_tls_or_cluster_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unix"):
        CacheService("p", url="unix:///run/redis.sock", ssl=True)
    with pytest.raises(ConfigurationError, match="unix"):
        CacheService("p", url="unix:///run/redis.sock", cluster=True)


def test_unix_socket_sync_and_async(password_server: RedisServer) -> None:
    path = password_server.unixsocket
    assert path is not None
    urls = [f"unix://{path}?db=2&password=default-pw-7",
            f"unix://:default-pw-7@{path}?db=2",
            f"unix://app:app-pw-9@{path}?db=2"]
    for url in urls:
        svc = CacheService(unique(), url=url)
        assert svc.location.startswith("unix://")
        assert "pw-" not in svc.location
        svc.set("k", {"over": "unix"})
        assert svc.get("k") == {"over": "unix"}
        assert svc.is_redis_available() is True
        with password_server.client(db=2) as raw:  # over TCP: the same server and db
            assert raw.exists(svc.full_key("k")) == 1
        assert svc.clear_all() == 1
        svc.close()

    async def main() -> None:
        async with AsyncCacheService(unique(), url=urls[2]) as svc:
            await svc.set("k", [1, 2])
            assert await svc.get("k") == [1, 2]
            assert await svc.is_redis_available() is True
            assert await svc.clear_all() == 1

    asyncio.run(main())
    location = parse_url(urls[0])
    client = build_sync_client(location, REDIS_PY)  # redis-py's client of the socket
    assert client.connection_pool.connection_kwargs["path"] == path
    client.close()


def test_unix_socket_of_a_stopped_server_is_an_outage(tmp_path: Any) -> None:
    location = parse_url(f"unix://{tmp_path}/none.sock")
    exc = sync_failure(location, "PING")
    assert classify_error(exc) == "outage"
    svc = CacheService(unique(), url=f"unix://{tmp_path}/none.sock",
                       breaker_min_backoff=0.05, breaker_max_backoff=0.1)
    svc.set("k", "memory")
    assert svc.get("k") == "memory"
    assert svc.is_redis_available() is False
