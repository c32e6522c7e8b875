"""The sans-I/O RESP core: bytes in, replies out; no sockets, no clocks, no event loop.

- ``encode_command`` turns one request's arguments into RESP bytes (hiredis' C packer); an
  argument it cannot encode raises ``EncodeError`` before anything is queued.
- ``RespCore`` parses what the server sent with ``hiredis.Reader`` (RESP2 and RESP3): error
  replies become ``ReplyError`` values, push frames (RESP3 ``>``) go to the push handler and are
  never matched to a request, bytes that are not RESP raise ``ProtocolError`` and break the core.
  It keeps the FIFO of ``Pending`` requests (each knows how many replies it expects) and matches
  replies to them in order; a cancelled request's replies are still read, then dropped, so the
  connection stays in step.
- ``handshake`` is the connection's first exchange as a generator of request batches (the
  httpx ``auth_flow`` shape): ``HELLO`` (with ``AUTH`` and ``SETNAME`` inside it), ``SELECT``;
  plain ``AUTH`` + ``CLIENT SETNAME`` when an old server does not know ``HELLO``. Drivers run it.

Deadlines are numbers the drivers put on ``Pending`` (their clock, their unit); the core only
compares them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Final

import hiredis

from cache_service._wire.errors import (
    ConnectionLost,
    EncodeError,
    HandshakeError,
    ProtocolError,
    ReplyError,
)
from cache_service._wire.settings import WireSettings

__all__ = [
    "NEED_DATA",
    "Arg",
    "Pending",
    "PushHandler",
    "RespCore",
    "encode_command",
    "encode_pipeline",
    "handshake",
]

Arg = bytes | str | int | float | memoryview
PushHandler = Callable[[list[object]], None]

class _NeedData:
    """The type of ``NEED_DATA``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


# What the reader returns while no complete reply is buffered: not hiredis' default ``False``,
# which is also a RESP3 boolean reply (``#f``) and would leave that request unanswered.
NEED_DATA: Final = _NeedData()
_ARG_TYPES = (bytes, str, int, float, memoryview)


def encode_command(args: Sequence[Arg]) -> bytes:
    """RESP bytes of one request (str as strict UTF-8, int and float as their decimal text)."""
    if not args:  # "*0" gets no reply from Redis: the FIFO would wait forever for one
        raise _encode_error(args)
    try:
        # the stub types a 1-tuple; pack_command takes any tuple of these types
        return hiredis.pack_command(tuple(args))  # type: ignore[arg-type,no-any-return]
    except (TypeError, UnicodeError):
        raise _encode_error(args) from None


def encode_pipeline(commands: Sequence[Sequence[Arg]]) -> bytes:
    """RESP bytes of several requests, to be written at once; nothing if one cannot be encoded."""
    return b"".join([encode_command(command) for command in commands])


def _encode_error(args: Sequence[Arg]) -> EncodeError:
    """Say which argument could not be encoded, and why (never its value: it may be a key)."""
    if not args:
        return EncodeError("a request needs at least a command name")
    for index, arg in enumerate(args):
        if isinstance(arg, bool) or not isinstance(arg, _ARG_TYPES):
            return EncodeError(
                f"argument {index} is a {type(arg).__name__}: a request's arguments must be "
                "bytes, str, int or float (encode other values first; bool is refused)"
            )
        if isinstance(arg, str):
            try:
                arg.encode("utf-8", "strict")
            except UnicodeError:
                return EncodeError(f"argument {index} is a str that is not valid Unicode "
                                   "(a lone surrogate?): it has no UTF-8 form")
    return EncodeError("the request could not be encoded")


class Pending:
    """One request in the FIFO: how many replies it expects, the replies so far, whether its
    caller gave up, and its deadline (the driver's clock). ``deliver`` receives the reply (a
    list for several); drivers override it."""

    __slots__ = ("cancelled", "deadline", "expected", "replies", "result")

    def __init__(self, expected: int = 1, deadline: float = 0.0) -> None:
        self.expected = expected
        self.deadline = deadline
        self.cancelled = False
        self.replies: list[object] = []
        self.result: object = NEED_DATA

    def deliver(self, value: object) -> None:
        """The request's reply (its list of replies when it expects several) arrived."""
        self.result = value

    def fail(self, error: BaseException) -> None:
        """The connection was lost before the reply arrived."""
        self.result = error


def _ignore_push(_message: list[object]) -> None:
    """The default push handler: pushes nobody asked for are dropped."""


class RespCore:
    """Parser, FIFO and state of one connection (see the module docstring)."""

    __slots__ = ("_broken", "_closed", "_reader", "on_push", "pending")

    def __init__(self, on_push: PushHandler | None = None) -> None:
        self._reader = hiredis.Reader(protocolError=ProtocolError, replyError=ReplyError,
                                      notEnoughData=NEED_DATA)
        self.pending: deque[Pending] = deque()
        self.on_push: PushHandler = on_push or _ignore_push
        self._broken: ProtocolError | None = None
        self._closed = False

    # -- state
    @property
    def closed(self) -> bool:
        """True once the connection was lost or broken: nothing more may be queued."""
        return self._closed

    def enqueue(self, request: Pending) -> None:
        """Queue a request whose bytes the driver is about to write."""
        if self._closed:
            raise ConnectionLost("the connection is closed")
        self.pending.append(request)

    def cancel(self, request: Pending) -> None:
        """The caller gave up on ``request``: its replies will be read and dropped."""
        request.cancelled = True

    def close(self, error: BaseException) -> list[Pending]:
        """The connection is gone: mark the core closed and return the requests that were in
        flight (the driver fails them with ``error`` at once)."""
        self._closed = True
        lost = [request for request in self.pending if not request.cancelled]
        self.pending.clear()
        for request in lost:
            request.fail(error)
        return lost

    def earliest_deadline(self) -> float | None:
        """The earliest deadline of the requests in flight (None when there are none)."""
        if not self.pending:
            return None
        return min(request.deadline for request in self.pending)

    # -- bytes in
    def feed(self, data: bytes | bytearray | memoryview, length: int = -1) -> None:
        """Hand the parser bytes read from the connection (the first ``length`` of them)."""
        if self._broken is not None:
            raise self._broken
        # hiredis reads any buffer; its stub says bytes
        if length < 0:
            self._reader.feed(data)  # type: ignore[arg-type]
        else:
            self._reader.feed(data, 0, length)  # type: ignore[arg-type]

    def next_reply(self) -> object:
        """The next reply that answers a request, or ``NEED_DATA``; pushes go to ``on_push``.

        Raises ``ProtocolError`` (and stays broken) when the bytes are not RESP.
        """
        reader = self._reader
        while True:
            try:
                reply = reader.gets()
            except ProtocolError as exc:
                raise self._break(str(exc)) from None
            except Exception as exc:  # hiredis building a value failed: the bytes are not RESP
                raise self._break(f"{type(exc).__name__}: {exc}") from exc
            if type(reply) is not hiredis.PushNotification:
                return reply
            self.on_push(list(reply))

    def receive(self, data: bytes | bytearray | memoryview) -> None:
        """Feed ``data`` and deliver every reply it completes to its request, in order."""
        self.feed(data)
        pending = self.pending
        while True:
            reply = self.next_reply()
            if reply is NEED_DATA:
                return
            if not pending:
                raise self._break("a reply arrived that no request asked for")
            head = pending[0]
            if head.expected == 1:
                pending.popleft()
                if not head.cancelled:
                    head.deliver(reply)
                continue
            head.replies.append(reply)
            if len(head.replies) == head.expected:
                pending.popleft()
                if not head.cancelled:
                    head.deliver(head.replies)

    def _break(self, why: str) -> ProtocolError:
        self._broken = ProtocolError(f"the server sent bytes that are not RESP ({why})")
        return self._broken


# -- the handshake ------------------------------------------------------------------------------

Batch = list[list[Arg]]


def handshake(settings: WireSettings) -> Generator[Batch, list[object], int]:
    """The first exchange of a connection: yields batches of requests (each batch written at
    once), receives their replies, returns the RESP version agreed. Raises ``HandshakeError``
    naming what the server refused."""
    hello: list[Arg] = ["HELLO", settings.protocol]
    # A password without a user is sent as ``AUTH password`` first (in the same write), as
    # redis-py does: the server refuses it when it has no password, so a password it does not
    # expect is named as a misconfiguration (``HELLO AUTH default x`` would pass silently).
    auth: Batch = []
    if settings.password is not None:
        if settings.username:
            hello += ["AUTH", settings.username, settings.password]
        else:
            auth = [["AUTH", settings.password]]
    if settings.client_name:
        hello += ["SETNAME", settings.client_name]
    select: Batch = [["SELECT", settings.db]] if settings.db else []
    replies = yield [*auth, hello, *select]
    if auth:
        if isinstance(replies[0], ReplyError) and not _unknown_command(replies[0]):
            raise _refused(settings, "AUTH", replies[0])
        replies = replies[1:]
    answer = replies[0]
    if not isinstance(answer, ReplyError):
        _check_select(settings, replies[1:])
        return settings.protocol
    if not _unknown_command(answer):
        raise _refused(settings, "HELLO", answer)
    if settings.protocol == 3:
        raise HandshakeError(
            f"{settings.where} does not know HELLO (Redis < 6), so it cannot speak RESP3: "
            "use protocol 2", answer)
    labelled: list[tuple[str, list[Arg]]] = []
    if settings.password is not None:
        user: list[Arg] = [settings.username] if settings.username else []
        labelled.append(("AUTH", ["AUTH", *user, settings.password]))
    if settings.client_name:
        labelled.append(("CLIENT SETNAME", ["CLIENT", "SETNAME", settings.client_name]))
    batch = [command for _, command in labelled]
    replies = yield batch + select
    for (label, _), reply in zip(labelled, replies, strict=False):
        if isinstance(reply, ReplyError):
            raise _refused(settings, label, reply)
    _check_select(settings, replies[len(batch):])
    return 2


def _check_select(settings: WireSettings, replies: list[object]) -> None:
    if replies and isinstance(replies[0], ReplyError):
        raise HandshakeError(f"{settings.where} refused SELECT {settings.db}: {replies[0].message}",
                             replies[0])


def _unknown_command(reply: ReplyError) -> bool:
    return reply.code == "ERR" and "unknown command" in reply.message.lower()


def _refused(settings: WireSettings, command: str, reply: ReplyError) -> HandshakeError:
    """A handshake error naming the setting to fix (never the password)."""
    user = settings.username or "default"
    if reply.code == "WRONGPASS" or "invalid password" in reply.message:
        why = f"authentication failed for user {user!r}: wrong password or unknown/disabled user"
    elif reply.code == "NOAUTH" or "without any password configured" in reply.message:
        why = ("the server requires a password and none was given"
               if settings.password is None else
               "the server has no password set but one was given")
    elif reply.code == "NOPROTO":
        why = f"the server does not support RESP{settings.protocol}"
    elif reply.code == "NOPERM":
        why = f"user {user!r} may not run {command}"
    else:
        why = f"{command} was refused"
    return HandshakeError(f"{settings.where}: {why} ({reply.message})", reply)
