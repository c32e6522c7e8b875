"""A connection that mostly listens: RESP3 pushes, read without ever blocking.

``PushConnection`` connects and runs the handshake as ``SyncConnection`` does (blocking, within
the connect and request deadlines), always with ``HELLO 3`` (pushes need RESP3), then turns its
socket non-blocking: ``send`` writes a request without waiting for its reply, ``replies``
returns every complete reply that has arrived (pushes go to the handler as they are parsed, in
the order of the stream) and never waits. A caller waits for bytes with a selector on the
connection itself (``fileno``). For the near cache's tracking links (``CLIENT TRACKING`` and
its ``invalidate`` pushes, heartbeats as plain commands).

Plain TCP and unix sockets are read with ``sockread`` (libc's ``recv`` keeping the GIL:
``keeps_gil``), so a thread holding a lock while it reads never waits a switch interval for the
GIL; TLS bytes must go through OpenSSL, read with ``recv_into`` (which releases it).
"""

from __future__ import annotations

import ssl
from dataclasses import replace

from cache_service._wire.errors import ConnectionLost, connection_lost
from cache_service._wire.protocol import NEED_DATA, Arg, PushHandler, encode_command
from cache_service._wire.settings import WireSettings
from cache_service._wire.sockread import CHUNK, reader_for
from cache_service._wire.sync_conn import SyncConnection

__all__ = ["PushConnection"]

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class PushConnection(SyncConnection):
    """A RESP3 connection read without blocking (see the module docstring); one thread at a
    time, as ``SyncConnection``."""

    __slots__ = ("_read_now",)

    def __init__(self, settings: WireSettings, *, on_push: PushHandler) -> None:
        """Connect and run the handshake (``ConnectFailed``, ``HandshakeError``: a server
        without RESP3 says so there)."""
        super().__init__(replace(settings, protocol=3), on_push=on_push)
        sock = self._sock
        assert sock is not None
        sock.setblocking(False)
        self._read_now = reader_for(sock)

    @property
    def keeps_gil(self) -> bool:
        """Whether ``replies`` reads without releasing the GIL (not over TLS)."""
        return self._read_now is not None

    def fileno(self) -> int:
        """The socket's descriptor, for a selector (-1 once closed)."""
        sock = self._sock
        return -1 if sock is None else sock.fileno()

    def send(self, *args: Arg) -> None:
        """Write one request without waiting for its reply. A few bytes into a healthy
        connection's buffer always fit: ``ConnectionLost`` (and closed) when they do not."""
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"the connection to {self.settings.where} is closed")
        data = encode_command(args)
        try:
            try:
                sent = sock.send(data)
            except _WOULD_BLOCK:
                sent = 0
            if sent != len(data):
                raise ConnectionLost(f"{self.settings.where} takes no more bytes (a full "
                                     "send buffer: the server stopped reading)")
        except BaseException as exc:
            raise self._lost(exc) from exc

    def replies(self) -> list[object]:
        """Every complete reply waiting on the connection, in order (pushes went to the
        handler on the way); [] when none. ``ConnectionLost`` (and closed) when the server
        closed the connection or sent bytes that are not RESP."""
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"the connection to {self.settings.where} is closed")
        core, read_now, buffer = self._core, self._read_now, self._buffer
        out: list[object] = []
        try:
            while True:
                if read_now is not None:
                    data = read_now()
                    if data is None:
                        break
                    n = len(data)
                    if n:
                        core.feed(data)
                else:
                    try:
                        n = sock.recv_into(buffer, CHUNK)
                    except _WOULD_BLOCK:
                        break
                    if n:
                        core.feed(buffer, n)
                if not n:
                    raise connection_lost(self.settings.where, None)
                while (reply := core.next_reply()) is not NEED_DATA:
                    out.append(reply)
                # a short read took all the kernel had (TLS: and all OpenSSL holds)
                if n < CHUNK and not (read_now is None and _tls_pending(sock)):
                    break
        except BaseException as exc:
            raise self._lost(exc) from exc
        return out


def _tls_pending(sock: object) -> bool:
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
