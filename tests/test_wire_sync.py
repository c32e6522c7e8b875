"""The blocking driver's per-thread connections, against real servers.

What it searches for: two threads sharing a connection (replies crossing between threads), a
failed connection handed out again, a connection inherited through ``fork()`` used by the
child, a reply arriving in pieces slower than the deadline being waited for past it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from cache_service._wire import (
    ConnectionLost,
    SyncConnection,
    ThreadConnections,
    WireSettings,
    WireTimeout,
)
from tests.servers import ChaosProxy, RedisServer


def patient(server: RedisServer | ChaosProxy, **overrides: object) -> WireSettings:
    options: dict[str, object] = {"connect_timeout": 2.0, "request_timeout": 2.0, **overrides}
    return WireSettings(host=server.host, port=server.port, **options)  # type: ignore[arg-type]


def test_each_thread_gets_its_own_connection(redis_server: RedisServer) -> None:
    pool = ThreadConnections(patient(redis_server))
    ids: dict[int, set[object]] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            mine = ids.setdefault(n, set())
            for i in range(200):
                key = f"wire-thread-{n}-{i % 7}"
                pool.execute("SET", key, f"{n}:{i}")
                assert pool.execute("GET", key) == f"{n}:{i}".encode()
                mine.add(pool.execute("CLIENT", "ID"))
            pool.execute("DEL", *[f"wire-thread-{n}-{j}" for j in range(7)])
        except BaseException as exc:
            errors.append(exc)
        finally:
            pool.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:1]
    assert all(len(seen) == 1 for seen in ids.values())  # one connection per thread...
    assert len(set().union(*ids.values())) == 8  # ...not shared


def test_a_failed_connection_is_replaced(fresh_redis_server: RedisServer) -> None:
    pool = ThreadConnections(patient(fresh_redis_server))
    first = pool.get()
    first_id = pool.execute("CLIENT", "ID")
    with _admin(fresh_redis_server) as admin:
        admin.execute("CLIENT", "KILL", "ID", first_id)
    with pytest.raises(ConnectionLost):
        pool.execute("PING")
    assert first.closed
    assert pool.execute("PING") == b"PONG"
    assert pool.get() is not first
    pool.close()


class _admin:
    """A throw-away connection as a context manager."""

    def __init__(self, server: RedisServer) -> None:
        self.connection = SyncConnection(patient(server))

    def __enter__(self) -> SyncConnection:
        return self.connection

    def __exit__(self, *_: object) -> None:
        self.connection.close()


def test_a_forked_child_makes_its_own_connection(redis_server: RedisServer) -> None:
    pool = ThreadConnections(patient(redis_server))
    parent_id = pool.execute("CLIENT", "ID")
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork() with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report its connection's id, never touch the parent's
        try:
            child_id = pool.execute("CLIENT", "ID")
            os.write(write, str(child_id).encode())
        finally:
            os._exit(0)
    os.close(write)
    child_id = int(os.read(read, 100) or b"-1")
    os.close(read)
    os.waitpid(pid, 0)
    assert child_id not in (-1, parent_id)
    assert pool.execute("CLIENT", "ID") == parent_id  # the parent's connection still works
    pool.close()


@pytest.fixture
def dripping_server() -> Iterator[tuple[str, int]]:
    """A fake server: answers the handshake, then drips a reply a byte every 0.05 s, for 5 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            peer, _ = listener.accept()
            with peer:
                peer.recv(1000)
                peer.sendall(b"+OK\r\n")
                peer.recv(1000)
                peer.sendall(b"$100\r\n")
                for _ in range(100):
                    time.sleep(0.05)
                    peer.sendall(b"a")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[:2]
    listener.close()
    thread.join(10)


def test_a_trickling_reply_is_bounded_by_the_deadline(dripping_server: tuple[str, int]) -> None:
    host, port = dripping_server
    connection = SyncConnection(WireSettings(host=host, port=port, request_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(WireTimeout):
        connection.execute("GET", "k")  # every piece comes within 0.5 s; the whole never does
    assert time.monotonic() - started < 2.0
    assert connection.closed


def test_close_all_closes_every_threads_connection(redis_server: RedisServer) -> None:
    """``close_all`` (a client shutting down) leaves no thread's socket open; a thread that
    calls again gets a new connection."""
    pool = ThreadConnections(patient(redis_server))
    made: list[SyncConnection] = []

    def work() -> None:
        pool.execute("PING")
        made.append(pool.get())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    mine = pool.get()
    assert len(made) == 4
    pool.close_all()
    assert mine.closed
    assert all(connection.closed for connection in made)
    assert pool.execute("PING") == b"PONG"  # this thread: a fresh connection
    assert pool.get() is not mine
    pool.close_all()
