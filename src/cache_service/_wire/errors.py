"""The connection layer's errors, classified where they arise.

Three kinds, so a caller never has to guess from a message what failed::

    WireError                     root of every error this package raises
    ├── ConnectivityError         the connection is unusable; every request in flight on it failed
    │   ├── ConnectFailed         no connection: refused, unreachable, connect deadline, TLS failed
    │   ├── HandshakeError        the server refused the handshake (password, ACL user, RESP3, db)
    │   └── ConnectionLost        an open connection closed, was reset or was dropped by us
    │       ├── WireTimeout       a request passed its deadline; its connection was dropped
    │       └── ProtocolError     the server sent bytes that are not RESP; connection dropped
    ├── ReplyError                an error reply to one request (OOM, NOPERM, WRONGTYPE, BUSY,
    │                             LOADING, READONLY, MOVED, ASK, ...); the connection stays in step
    └── EncodeError               a request the client cannot encode; nothing was sent
                                  (also a TypeError and a ValueError)

``ReplyError`` is a *value*: the protocol core hands it back in the reply's place (also inside a
pipeline's or a transaction's replies); a driver's single-request call raises it for that request
only. Everything under ``ConnectivityError`` means "this connection is gone", never "this key".
Messages name the host and the problem, never a password.
"""

from __future__ import annotations

__all__ = [
    "ConnectFailed",
    "ConnectionLost",
    "ConnectivityError",
    "EncodeError",
    "HandshakeError",
    "ProtocolError",
    "ReplyError",
    "WireError",
    "WireTimeout",
    "connect_failed",
    "connection_lost",
]


class WireError(Exception):
    """Root of every error raised by the connection layer."""


class ConnectivityError(WireError):
    """The connection cannot serve requests; the requests in flight on it failed."""


class ConnectFailed(ConnectivityError):
    """No connection was made: refused, unreachable, past the connect deadline, TLS failed."""


class HandshakeError(ConnectivityError):
    """The server refused the handshake (HELLO/AUTH/SELECT/CLIENT SETNAME): a setting is wrong.

    ``reply`` is the server's error reply, when there was one.
    """

    def __init__(self, message: str, reply: ReplyError | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class ConnectionLost(ConnectivityError):
    """An open connection closed, was reset, or was dropped by this client."""


class WireTimeout(ConnectionLost):
    """A request passed its deadline: its connection was dropped (never reused)."""


class ProtocolError(ConnectionLost):
    """The server sent bytes that are not RESP: the connection is out of step and was dropped."""


class ReplyError(WireError):
    """An error reply to one request; ``code`` is its first word (``WRONGTYPE``, ``OOM``...).

    Built by the reply parser from the reply's text; the connection stays usable.
    """

    @property
    def message(self) -> str:
        """The whole error text as the server sent it."""
        return str(self.args[0]) if self.args else ""

    @property
    def code(self) -> str:
        """The error code: the first word of the reply (``ERR`` when the server sent none)."""
        word = self.message.split(" ", 1)[0]
        return word if word.isupper() else "ERR"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.args == self.args

    def __hash__(self) -> int:
        return hash(self.args)


class EncodeError(WireError, TypeError, ValueError):
    """A request argument the client cannot encode (not bytes/str/int/float, or a str that is
    not valid Unicode); nothing was queued or sent."""


# -- classification of what the operating system reported -----------------------------------


def connect_failed(where: str, exc: BaseException) -> ConnectFailed:
    """``ConnectFailed`` for an exception raised while connecting to ``where``."""
    if isinstance(exc, ConnectFailed):
        return exc
    if isinstance(exc, TimeoutError):
        return ConnectFailed(f"connecting to {where} passed the connect deadline")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed(f"{where} refused the connection (is the server running?)")
    if type(exc).__module__ == "ssl" or "SSL" in type(exc).__name__:
        return ConnectFailed(f"TLS with {where} failed: {exc} (check the CA, the client "
                             "certificate and whether the server speaks TLS)")
    return ConnectFailed(f"connecting to {where} failed: {type(exc).__name__}: {exc}")


def connection_lost(where: str, exc: BaseException | None) -> ConnectionLost:
    """``ConnectionLost`` (``WireTimeout`` for a timeout) for an open connection's failure."""
    if isinstance(exc, ConnectionLost):
        return exc
    if isinstance(exc, TimeoutError):
        return WireTimeout(f"a request to {where} passed its deadline; its connection was "
                           "dropped")
    if exc is None:
        return ConnectionLost(f"{where} closed the connection")
    return ConnectionLost(f"the connection to {where} was lost: {type(exc).__name__}: {exc}")
