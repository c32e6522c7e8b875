"""``PushConnection`` (the near cache's tracking links) against real servers: pushes reach the
handler in stream order while replies come back from ``replies``, which never waits; a burst
larger than one read arrives whole; a connection the server closes is lost and closed; TLS is
read through OpenSSL (not with the GIL-keeping reader)."""

from __future__ import annotations

import selectors
import time

import pytest

from cache_service._wire import ConnectionLost, PushConnection, TLSSettings, WireSettings
from tests.servers import RedisServer

from .helpers import unique


def settings_of(server: RedisServer, **overrides: object) -> WireSettings:
    options: dict[str, object] = {"connect_timeout": 2.0, "request_timeout": 2.0, **overrides}
    return WireSettings(host=server.host, port=server.port, **options)  # type: ignore[arg-type]


def wait_replies(connection: PushConnection, count: int, timeout: float = 5.0) -> list[object]:
    """Read until ``count`` replies arrived (the selector waits; ``replies`` never does)."""
    got: list[object] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(connection, selectors.EVENT_READ)
        while len(got) < count:
            assert time.monotonic() < deadline, f"{len(got)} of {count} replies"
            selector.select(0.1)
            got += connection.replies()
    return got


def tracking(server: RedisServer, prefix: str, **overrides: object
             ) -> tuple[PushConnection, list[list[object]]]:
    pushes: list[list[object]] = []
    connection = PushConnection(settings_of(server, **overrides), on_push=pushes.append)
    connection.send("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", prefix)
    assert wait_replies(connection, 1) == [b"OK"]
    return connection, pushes


def test_pushes_go_to_the_handler_in_order_and_replies_come_back(
        redis_server: RedisServer) -> None:
    prefix = unique("push") + ":"
    connection, pushes = tracking(redis_server, prefix)
    assert connection.keeps_gil
    assert connection.replies() == []  # nothing waiting: returns at once
    with redis_server.client() as raw:
        raw.set(prefix + "a", 1)
        connection.send("ROLE")
        raw.set(prefix + "b", 1)
        raw.set("elsewhere", 1)
        connection.send("PING")
        role, pong = wait_replies(connection, 2)
        assert role[0] == b"master"  # type: ignore[index]
        assert pong == b"PONG"
        assert pushes[0] == [b"invalidate", [(prefix + "a").encode()]]  # before ROLE's answer
        deadline = time.monotonic() + 5
        while len(pushes) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
            connection.replies()
        assert [p[1] for p in pushes] == [[(prefix + k).encode()] for k in "ab"]
        raw.delete(prefix + "a", prefix + "b", "elsewhere")
    connection.close()
    assert connection.fileno() == -1


def test_a_burst_larger_than_one_read_arrives_whole(redis_server: RedisServer) -> None:
    prefix = unique("burst") + ":"
    connection, pushes = tracking(redis_server, prefix)
    names = [f"{prefix}{'x' * 60}{i}" for i in range(2000)]  # ~180 KB of pushes
    with redis_server.client() as raw:
        raw.mset(dict.fromkeys(names, 1))
        connection.send("PING")
        assert wait_replies(connection, 1) == [b"PONG"]
        raw.delete(*names)
    seen = {key for push in pushes for key in push[1]}  # type: ignore[union-attr]
    assert seen == {name.encode() for name in names}
    connection.close()


def test_a_connection_the_server_closes_is_lost(redis_server: RedisServer) -> None:
    connection, _ = tracking(redis_server, unique("lost") + ":")
    connection.send("CLIENT", "ID")
    (client_id,) = wait_replies(connection, 1)
    with redis_server.client() as raw:
        raw.client_kill_filter(_id=client_id)
    with pytest.raises(ConnectionLost):
        wait_replies(connection, 1)
    assert connection.closed
    with pytest.raises(ConnectionLost):
        connection.send("PING")


def test_over_tls_it_reads_through_openssl(tls_server: RedisServer) -> None:
    tls = TLSSettings(ca_file=str(tls_server.tls.ca_cert))  # type: ignore[union-attr]
    prefix = unique("push-tls") + ":"
    connection, pushes = tracking(tls_server, prefix, tls=tls)
    assert not connection.keeps_gil
    names = [f"{prefix}{'y' * 60}{i}" for i in range(500)]  # several TLS records
    with tls_server.client() as raw:
        raw.mset(dict.fromkeys(names, 1))
        connection.send("PING")
        assert wait_replies(connection, 1) == [b"PONG"]
        raw.delete(*names)
    assert {key for push in pushes for key in push[1]} == {  # type: ignore[union-attr]
        name.encode() for name in names}
    connection.close()
