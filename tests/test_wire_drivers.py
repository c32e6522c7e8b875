"""Both drivers of the connection layer against real servers: the blocking one, and the asyncio
one under asyncio's loop and uvloop (``tests/wire_drivers.py`` gives them one face).

What it searches for: values that do not round-trip (any bytes, through GET/SET/MGET and
pipelines), a handshake that fails without saying why (password, ACL user, wrong password,
missing password, db, RESP3, an old server without HELLO), pushes matched to requests, a hung
server costing more than one deadline, a reset or closed connection that is reused or slow to
fail, encoding errors that leave the connection out of step, TLS and unix sockets.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_service._wire import (
    ConnectFailed,
    ConnectionLost,
    EncodeError,
    HandshakeError,
    ProtocolError,
    ReplyError,
    TLSSettings,
    WireSettings,
    WireTimeout,
)
from tests.servers import ChaosProxy, RedisServer, TLSFiles, make_tls_files
from tests.wire_drivers import DRIVERS, Handle, open_handle

PATIENT = {"connect_timeout": 2.0, "request_timeout": 2.0}  # shared servers on a busy machine


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def handles() -> Iterator[list[Handle]]:
    """Handles a test opens; all closed at the end."""
    opened: list[Handle] = []
    yield opened
    for handle in opened:
        handle.close()


def _settings(server: RedisServer, **overrides: object) -> WireSettings:
    return WireSettings(host=server.host, port=server.port, **{**PATIENT, **overrides})  # type: ignore[arg-type]


# -- round trips ---------------------------------------------------------------------------------

_keys = st.binary(min_size=1, max_size=40)
# small values, and values larger than the driver's 64 KiB read buffer (several reads per reply)
_values = st.binary(max_size=300) | st.builds(
    lambda chunk, times: chunk * times, st.binary(min_size=1, max_size=8), st.integers(9000, 12000))


@pytest.fixture(scope="module", params=DRIVERS)
def shared_handle(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Handle]:
    handle = open_handle(str(request.param), _settings(redis_server))
    yield handle
    handle.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _values, min_size=1, max_size=5))
def test_binary_values_round_trip(shared_handle: Handle, items: dict[bytes, bytes]) -> None:
    prefix = b"wire-rt:"
    keys = [prefix + key for key in items]
    for key, value in zip(keys, items.values(), strict=True):
        assert shared_handle.execute("SET", key, value) == b"OK"
    for key, value in zip(keys, items.values(), strict=True):
        assert shared_handle.execute("GET", key) == value
    assert shared_handle.execute("MGET", *keys) == list(items.values())
    replies = shared_handle.pipeline([["GET", key] for key in keys] + [["DEL", *keys]])
    assert replies == [*items.values(), len(keys)]
    assert shared_handle.execute("GET", keys[0]) is None


def test_error_replies_are_that_requests_only(shared_handle: Handle) -> None:
    shared_handle.execute("SET", "wire-err", "text")
    with pytest.raises(ReplyError) as caught:
        shared_handle.execute("INCR", "wire-err")
    assert caught.value.code == "ERR"
    with pytest.raises(ReplyError) as caught:
        shared_handle.execute("LPUSH", "wire-err", "x")
    assert caught.value.code == "WRONGTYPE"
    replies = shared_handle.pipeline([["INCR", "wire-err"], ["GET", "wire-err"],
                                      ["HGET", "wire-err", "f"]])
    assert isinstance(replies[0], ReplyError)
    assert replies[1] == b"text"
    assert isinstance(replies[2], ReplyError)
    assert replies[2].code == "WRONGTYPE"
    assert shared_handle.execute("DEL", "wire-err") == 1


def test_an_argument_that_cannot_be_encoded_sends_nothing(shared_handle: Handle) -> None:
    for bad in (None, True, ["list"], "\ud800", 1j):
        with pytest.raises(EncodeError):
            shared_handle.execute("SET", "wire-enc", bad)  # type: ignore[arg-type]
        with pytest.raises(EncodeError):
            shared_handle.pipeline([["SET", "wire-enc", "ok"], ["SET", "wire-enc", bad]])
    assert shared_handle.execute("GET", "wire-enc") is None  # nothing of either was sent
    assert shared_handle.execute("PING") == b"PONG"


# -- the handshake ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server() -> Iterator[RedisServer]:
    with RedisServer(password="default-secret", acl_user=("wire-app", "app-secret"),
                     name="wire-auth") as server:
        yield server


@pytest.mark.parametrize("protocol", [2, 3])
def test_password_acl_user_db_and_name(
    driver: str, auth_server: RedisServer, handles: list[Handle], protocol: int
) -> None:
    by_password = open_handle(driver, _settings(auth_server, password="default-secret",
                                                protocol=protocol, db=5, client_name="wire-t"))
    handles.append(by_password)
    assert by_password.execute("ACL", "WHOAMI") == b"default"
    assert by_password.execute("CLIENT", "GETNAME") == b"wire-t"
    by_password.execute("SET", "wire-db", "five")
    by_user = open_handle(driver, _settings(auth_server, username="wire-app",
                                            password="app-secret", protocol=protocol))
    handles.append(by_user)
    assert by_user.execute("ACL", "WHOAMI") == b"wire-app"
    assert by_user.execute("GET", "wire-db") is None  # db 0
    assert by_user.execute("SELECT", 5) == b"OK"
    assert by_user.execute("GETDEL", "wire-db") == b"five"
    hello = by_user.execute("HELLO")
    proto = hello[b"proto"] if isinstance(hello, dict) else dict(zip(hello[::2], hello[1::2],  # type: ignore[index]
                                                                      strict=True))[b"proto"]
    assert proto == protocol


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"password": "wrong-secret"}, "authentication failed for user 'default'"),
        ({"username": "wire-app", "password": "wrong-secret"},
         "authentication failed for user 'wire-app'"),
        ({"username": "nobody", "password": "app-secret"}, "authentication failed for user"),
        ({}, "requires a password and none was given"),
        ({"password": "default-secret", "db": 99}, "SELECT 99"),
    ],
)
def test_a_refused_handshake_names_the_problem(
    driver: str, auth_server: RedisServer, overrides: dict[str, object], says: str
) -> None:
    for protocol in (2, 3):
        with pytest.raises(HandshakeError, match=says) as caught:
            open_handle(driver, _settings(auth_server, protocol=protocol, **overrides))
        assert "wrong-secret" not in str(caught.value)
        assert "app-secret" not in str(caught.value)


def test_without_hello_resp2_falls_back_to_auth(driver: str, handles: list[Handle]) -> None:
    with RedisServer(password="pw-old", extra_args=["--rename-command", "HELLO", "HELLO-GONE"],
                     name="wire-nohello") as server:
        handle = open_handle(driver, _settings(server, password="pw-old", db=2,
                                               client_name="old"))
        handles.append(handle)
        assert handle.execute("CLIENT", "GETNAME") == b"old"
        assert "db=2" in str(handle.execute("CLIENT", "INFO"))
        with pytest.raises(HandshakeError, match="cannot speak RESP3"):
            open_handle(driver, _settings(server, password="pw-old", protocol=3))
        with pytest.raises(HandshakeError, match="authentication failed"):
            open_handle(driver, _settings(server, password="not-it"))


def test_resp3_tracking_invalidations_go_to_the_push_handler(
    driver: str, redis_server: RedisServer, handles: list[Handle]
) -> None:
    pushes: list[list[object]] = []
    handle = open_handle(driver, _settings(redis_server, protocol=3), on_push=pushes.append)
    handles.append(handle)
    writer = open_handle("sync", _settings(redis_server))
    handles.append(writer)
    assert handle.execute("CLIENT", "TRACKING", "ON") == b"OK"
    for round_ in range(3):
        key = f"wire-track-{driver}-{round_}"
        writer.execute("SET", key, "v1")
        assert handle.execute("GET", key) == b"v1"  # now tracked
        writer.execute("SET", key, "v2")
        for _ in range(100):
            if [b"invalidate", [key.encode()]] in pushes:
                break
            handle.wait_pushes(0.05)
        assert [b"invalidate", [key.encode()]] in pushes
        assert handle.execute("GET", key) == b"v2"  # the reply is its own, not the push
        writer.execute("DEL", key)


def _failure(handle: Handle) -> BaseException:
    """The error of the first failing PING (a write may land before a reset is seen)."""
    for _ in range(3):
        try:
            handle.execute("PING")
        except Exception as exc:
            return exc
    raise AssertionError("the connection kept working")


# -- failures -------------------------------------------------------------------------------------


def test_a_hung_server_costs_one_deadline(
    driver: str, chaos_proxy: ChaosProxy, handles: list[Handle]
) -> None:
    proxied = WireSettings(host=chaos_proxy.host, port=chaos_proxy.port, connect_timeout=2.0,
                           request_timeout=0.25)
    handle = open_handle(driver, proxied)
    handles.append(handle)
    assert handle.execute("PING") == b"PONG"
    chaos_proxy.hang()
    started = time.monotonic()
    with pytest.raises(WireTimeout):
        handle.execute("GET", "k")
    assert time.monotonic() - started < 3.0  # one deadline (0.25 s), generously
    assert handle.closed
    with pytest.raises(ConnectionLost):
        handle.execute("PING")  # never reused
    chaos_proxy.heal()
    again = open_handle(driver, proxied)
    handles.append(again)
    assert again.execute("PING") == b"PONG"


def test_a_reset_connection_fails_fast_and_a_new_one_works(
    driver: str, chaos_proxy: ChaosProxy, handles: list[Handle]
) -> None:
    proxied = WireSettings(host=chaos_proxy.host, port=chaos_proxy.port, connect_timeout=2.0,
                           request_timeout=5.0)
    handle = open_handle(driver, proxied)
    handles.append(handle)
    assert handle.execute("PING") == b"PONG"
    chaos_proxy.reset_connections()
    started = time.monotonic()
    error = _failure(handle)
    assert isinstance(error, ConnectionLost)
    assert not isinstance(error, WireTimeout)
    assert time.monotonic() - started < 3.0  # fails on the reset, not on the 5 s deadline
    again = open_handle(driver, proxied)
    handles.append(again)
    assert again.execute("PING") == b"PONG"
    chaos_proxy.cut()
    with pytest.raises(ConnectFailed, match="refused"):
        open_handle(driver, proxied)


def test_a_connection_the_server_closes_fails_fast(
    driver: str, fresh_redis_server: RedisServer, handles: list[Handle]
) -> None:
    handle = open_handle(driver, _settings(fresh_redis_server, client_name="doomed"))
    handles.append(handle)
    admin = open_handle("sync", _settings(fresh_redis_server))
    handles.append(admin)
    assert admin.execute("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal") == 1
    assert isinstance(_failure(handle), ConnectionLost)
    fresh_redis_server.kill()
    assert isinstance(_failure(admin), ConnectionLost)
    with pytest.raises(ConnectFailed):
        open_handle(driver, _settings(fresh_redis_server))


def test_a_server_that_hangs_at_connect_costs_the_deadlines(
    driver: str, chaos_proxy: ChaosProxy
) -> None:
    chaos_proxy.hang()  # accepts, then forwards nothing: the handshake gets no reply
    started = time.monotonic()
    with pytest.raises(WireTimeout):
        open_handle(driver, WireSettings(host=chaos_proxy.host, port=chaos_proxy.port))
    assert time.monotonic() - started < 3.0


@pytest.fixture
def not_redis() -> Iterator[tuple[str, int]]:
    """A TCP server that answers anything with an HTTP error, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                peer, _ = listener.accept()
                with peer:
                    peer.recv(100)
                    peer.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                    time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[:2]
    listener.close()
    thread.join(5)


def test_a_server_that_does_not_speak_resp_is_a_protocol_error(
    driver: str, not_redis: tuple[str, int]
) -> None:
    host, port = not_redis
    with pytest.raises(ProtocolError, match="not RESP"):
        open_handle(driver, WireSettings(host=host, port=port, **PATIENT))  # type: ignore[arg-type]


# -- TLS and unix sockets ------------------------------------------------------------------


def _tls_settings(server: RedisServer, files: TLSFiles, **tls: object) -> WireSettings:
    user, password = server.acl_user or ("default", "")
    options = {"ca_file": files.ca_cert, "cert_file": files.client_cert,
               "key_file": files.client_key, **tls}
    return _settings(server, username=user, password=password,
                     tls=TLSSettings(**options))  # type: ignore[arg-type]


def test_tls_with_a_client_certificate(
    driver: str, tls_server: RedisServer, tls_files: TLSFiles, handles: list[Handle]
) -> None:
    handle = open_handle(driver, _tls_settings(tls_server, tls_files))
    handles.append(handle)
    assert handle.execute("ACL", "WHOAMI") == b"cache-app"
    assert handle.execute("SET", "wire-tls", b"\x00\xff" * 50_000) == b"OK"
    assert handle.execute("GET", "wire-tls") == b"\x00\xff" * 50_000
    by_name = open_handle(driver, _tls_settings(tls_server, tls_files, cert_file=None,
                                                key_file=None, server_hostname="localhost"))
    handles.append(by_name)
    assert by_name.execute("GETDEL", "wire-tls") == b"\x00\xff" * 50_000


def test_tls_refuses_a_server_it_cannot_verify(
    driver: str, tls_server: RedisServer, tls_files: TLSFiles, tmp_path: object
) -> None:
    other = make_tls_files(str(tmp_path))
    with pytest.raises(ConnectFailed, match="TLS"):
        open_handle(driver, _tls_settings(tls_server, tls_files, ca_file=other.ca_cert))
    with pytest.raises(ConnectFailed, match="TLS"):
        open_handle(driver, _tls_settings(tls_server, tls_files, server_hostname="elsewhere"))
    plain = WireSettings(host=tls_server.host, port=tls_server.port, connect_timeout=0.5,
                         request_timeout=0.5)
    with pytest.raises(ConnectionLost):  # a plain client gets no RESP from a TLS port
        open_handle(driver, plain)


def test_unix_socket(driver: str, handles: list[Handle]) -> None:
    with RedisServer(unixsocket=True, name="wire-unix") as server:
        assert server.unixsocket is not None
        handle = open_handle(driver, WireSettings(unix_path=server.unixsocket, **PATIENT))  # type: ignore[arg-type]
        handles.append(handle)
        assert handle.execute("SET", "wire-unix", b"\x01") == b"OK"
        assert handle.execute("GET", "wire-unix") == b"\x01"
        assert handle.pipeline([["PING"], ["DEL", "wire-unix"]]) == [b"PONG", 1]
    with pytest.raises(ConnectFailed):
        open_handle(driver, WireSettings(unix_path=server.unixsocket))
