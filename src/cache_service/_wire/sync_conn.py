"""The blocking driver: one connection used by one thread at a time, and a per-thread pool.

``SyncConnection.execute`` is the lean path: encode (C), ``sendall``, ``recv_into`` a buffer the
connection keeps, feed hiredis, ``gets`` — what a raw socket would do, plus one clock read for
the deadline. Only one request is ever outstanding, so no FIFO is needed: replies are read in
order. A request past its deadline (default 0.25 s) raises ``WireTimeout`` and the connection
is closed, never reused; so does any other failure of the socket (``ConnectionLost``). An error
reply raises ``ReplyError`` for that request only; in a pipeline it takes the reply's place.

``ThreadConnections`` gives each thread its own connection (``threading.local``), made on first
use and again after a failure or a ``fork()``: a lookup costs ~0.1 µs, where a checkout pool
(lock, pop, push back) costs several times that on every call and serialises threads on its
lock; the price is one connection per thread that uses it.
"""

from __future__ import annotations

import socket
import threading
import time
import weakref
from collections.abc import Generator, Sequence

from cache_service._wire.errors import ConnectionLost, ReplyError, connect_failed, connection_lost
from cache_service._wire.protocol import (
    NEED_DATA,
    Arg,
    PushHandler,
    RespCore,
    encode_command,
    handshake,
)
from cache_service._wire.settings import WireSettings, ssl_context
from cache_service.forking import at_fork_child

__all__ = ["SyncConnection", "ThreadConnections", "open_socket"]

_BUFFER = 65536


def open_socket(settings: WireSettings) -> socket.socket:
    """A connected socket (TLS done) within ``settings.connect_timeout``; ``ConnectFailed``."""
    deadline = time.monotonic() + settings.connect_timeout
    sock: socket.socket | None = None
    try:
        if settings.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(settings.connect_timeout)
            sock.connect(settings.unix_path)
        else:
            sock = socket.create_connection((settings.host, settings.port),
                                            timeout=settings.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if settings.tls is not None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock = ssl_context(settings.tls).wrap_socket(
                sock, server_hostname=settings.server_hostname)
    except Exception as exc:
        if sock is not None:
            sock.close()
        raise connect_failed(settings.where, exc) from exc
    sock.settimeout(settings.request_timeout)
    return sock


class SyncConnection:
    """One blocking connection; not for two threads at once (see ``ThreadConnections``)."""

    __slots__ = ("__weakref__", "_buffer", "_core", "_sock", "_timeout", "protocol", "settings")

    def __init__(self, settings: WireSettings, *, on_push: PushHandler | None = None) -> None:
        """Connect and run the handshake (``ConnectFailed``, ``HandshakeError``)."""
        self._sock: socket.socket | None = None
        self.settings = settings
        self._timeout = settings.request_timeout
        self._core = RespCore(on_push)
        self._buffer = bytearray(_BUFFER)
        self._sock = open_socket(settings)
        try:
            self.protocol = self._run(handshake(settings))
        except BaseException:
            self.close()
            raise

    @property
    def closed(self) -> bool:
        """True once closed (by ``close`` or by a failure): make a new connection."""
        return self._sock is None

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket; later calls raise ``ConnectionLost``."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def execute(self, *args: Arg) -> object:
        """Send one request and return its reply; an error reply raises ``ReplyError``."""
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"the connection to {self.settings.where} is closed")
        data = encode_command(args)
        start = time.monotonic()
        try:
            sock.sendall(data)
            reply = self._read(sock, start)
        except BaseException as exc:
            raise self._lost(exc) from exc
        if type(reply) is ReplyError:
            raise reply
        return reply

    def pipeline(self, commands: Sequence[Sequence[Arg]], *,
                 timeout: float | None = None) -> list[object]:
        """Send every request in one write, return their replies in order (``ReplyError``
        values in the place of error replies); ``timeout``: a shorter deadline than the
        settings' (what is left of a cluster request's after a redirect)."""
        if timeout is None or timeout >= self._timeout:
            return self._exchange([list(command) for command in commands])
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"the connection to {self.settings.where} is closed")
        limit = max(timeout, 0.001)
        sock.settimeout(limit)
        try:
            return self._exchange([list(command) for command in commands], limit)
        finally:
            if self._sock is not None:
                sock.settimeout(self._timeout)

    def read_pushes(self, timeout: float) -> None:
        """Wait up to ``timeout`` for bytes and hand every push they complete to the handler
        (for a connection that only receives pushes, e.g. invalidations)."""
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"the connection to {self.settings.where} is closed")
        try:
            sock.settimeout(timeout)
            try:
                n = sock.recv_into(self._buffer)
            except TimeoutError:
                return
            finally:
                sock.settimeout(self._timeout)
            if not n:
                raise connection_lost(self.settings.where, None)
            self._core.feed(self._buffer, n)
            if self._core.next_reply() is not NEED_DATA:
                raise ConnectionLost("a reply arrived that no request asked for")
        except BaseException as exc:
            raise self._lost(exc) from exc

    def _exchange(self, commands: list[list[Arg]], limit: float | None = None) -> list[object]:
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"the connection to {self.settings.where} is closed")
        data = b"".join([encode_command(command) for command in commands])
        start = time.monotonic()
        try:
            sock.sendall(data)
            return [self._read(sock, start, limit) for _ in commands]
        except BaseException as exc:
            raise self._lost(exc) from exc

    def _read(self, sock: socket.socket, start: float, limit: float | None = None) -> object:
        """The next reply, waiting at most until ``start`` + the request timeout (``limit``
        when given; the socket's timeout is then ``limit`` too)."""
        core = self._core
        reply = core.next_reply()
        if reply is not NEED_DATA:
            return reply
        buffer = self._buffer
        waited = False
        while True:
            if waited:  # a reply in several pieces: the deadline bounds the whole of it
                left = start + (self._timeout if limit is None else limit) - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
            n = sock.recv_into(buffer)
            if not n:
                raise connection_lost(self.settings.where, None)
            core.feed(buffer, n)
            reply = core.next_reply()
            if reply is not NEED_DATA:
                if waited:
                    sock.settimeout(self._timeout if limit is None else limit)
                return reply
            waited = True

    def _run(self, flow: Generator[list[list[Arg]], list[object], int]) -> int:
        """Drive a request flow (the handshake) to its result."""
        batch = next(flow)
        while True:
            try:
                batch = flow.send(self._exchange(batch))
            except StopIteration as done:
                return int(done.value)

    def _lost(self, exc: BaseException) -> BaseException:
        """Close after a failure mid-request; the error to raise (a connectivity error, or
        ``exc`` itself when it is not about the connection, e.g. KeyboardInterrupt)."""
        self.close()
        if isinstance(exc, (OSError, ConnectionLost)):
            return connection_lost(self.settings.where, exc)
        return exc


# -- one connection per thread -------------------------------------------------------------------

_generation = 0  # bumped in a forked child: the parent's sockets are not the child's


def _after_fork() -> None:
    global _generation
    _generation += 1


at_fork_child(_after_fork, 30)


class _Slot(threading.local):
    connection: SyncConnection | None = None
    generation = -1


class ThreadConnections:
    """A connection per thread, made on first use and remade after a failure or a fork."""

    def __init__(self, settings: WireSettings, *, on_push: PushHandler | None = None) -> None:
        self.settings = settings
        self._on_push = on_push
        self._slot = _Slot()
        self._every: weakref.WeakSet[SyncConnection] = weakref.WeakSet()  # for close_all
        self._every_lock = threading.Lock()

    def get(self) -> SyncConnection:
        """This thread's open connection (connecting now if it has none)."""
        slot = self._slot
        connection = slot.connection
        if connection is not None:
            if slot.generation == _generation and not connection.closed:
                return connection
            # failed, or inherited from the parent process: closing the child's copy of the
            # descriptor does not cut the parent's connection (no shutdown is sent)
            connection.close()
            slot.connection = None
        slot.connection = connection = SyncConnection(self.settings, on_push=self._on_push)
        slot.generation = _generation
        with self._every_lock:
            self._every.add(connection)
        return connection

    def execute(self, *args: Arg) -> object:
        """``execute`` on this thread's connection."""
        return self.get().execute(*args)

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        connection, self._slot.connection = self._slot.connection, None
        if connection is not None:
            connection.close()

    def close_all(self) -> None:
        """Close every thread's connection (a thread using one gets ``ConnectionLost`` and
        makes a new one on its next call): for shutting a client down."""
        with self._every_lock:
            connections = list(self._every)
            self._every.clear()
        for connection in connections:
            connection.close()
