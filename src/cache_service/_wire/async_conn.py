"""The asyncio driver: one connection on ``asyncio.Protocol`` with automatic pipelining.

Every request issued during one loop iteration goes out in one ``transport.write``: a request
appends its bytes to a buffer, the first one of an iteration schedules ``_flush`` with
``loop.call_soon``. (Writing each request at once costs a ``send`` system call per request: see
the package docstring for the measurement.) ``data_received`` feeds the protocol core, which
resolves the requests' futures in FIFO order. A bounded in-flight window (``max_in_flight``)
makes callers wait when it is full (back-pressure).

Deadlines without a timer per request: each request records ``loop.time() + timeout``; one
``loop.call_at`` timer per connection is armed for the earliest deadline and, when it fires,
re-armed for the next one (requests finish in order, so it fires about once per deadline
period, not once per request). A request past its deadline drops the connection: every request
in flight on it fails at once with ``WireTimeout``, so one hung server costs one deadline. A
lost connection (``connection_lost``, a reset, garbage) fails everything in flight with
``ConnectionLost``/``ProtocolError``. A cancelled caller's reply is read and dropped.
Works under uvloop; TCP (TCP_NODELAY is the loops' default), TLS, unix sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import cast

from cache_service._wire.errors import (
    ConnectionLost,
    ConnectivityError,
    ProtocolError,
    ReplyError,
    connect_failed,
    connection_lost,
)
from cache_service._wire.protocol import (
    Arg,
    Pending,
    PushHandler,
    RespCore,
    encode_command,
    handshake,
)
from cache_service._wire.settings import WireSettings, ssl_context

__all__ = ["AsyncConnection", "connect"]


class _Request(Pending):
    """A pending request whose caller awaits ``future``."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[object], expected: int, deadline: float) -> None:
        super().__init__(expected, deadline)
        self.future = future

    def deliver(self, value: object) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            copy = type(error)(*error.args)  # one exception object per awaiting task
            copy.__cause__ = error.__cause__
            self.future.set_exception(copy)


async def connect(
    settings: WireSettings,
    *,
    on_push: PushHandler | None = None,
    max_in_flight: int = 1024,
) -> AsyncConnection:
    """Connect (within the connect deadline), run the handshake, return the connection.

    Raises ``ConnectFailed`` or ``HandshakeError``.
    """
    loop = asyncio.get_running_loop()
    connection = AsyncConnection(settings, on_push=on_push, max_in_flight=max_in_flight)
    tls = ssl_context(settings.tls) if settings.tls is not None else None
    timeout = settings.connect_timeout
    try:
        if settings.unix_path:
            opening = loop.create_unix_connection(
                lambda: connection, settings.unix_path, ssl=tls,
                server_hostname=settings.server_hostname,
                ssl_handshake_timeout=timeout if tls else None)
        else:
            opening = loop.create_connection(
                lambda: connection, settings.host, settings.port, ssl=tls,
                server_hostname=settings.server_hostname,
                ssl_handshake_timeout=timeout if tls else None)
        await asyncio.wait_for(opening, timeout)
    except asyncio.TimeoutError as exc:  # not the builtin TimeoutError before Python 3.11
        connection.close()
        raise connect_failed(settings.where, TimeoutError()) from exc
    except Exception as exc:
        connection.close()
        raise connect_failed(settings.where, exc) from exc
    try:
        flow = handshake(settings)
        batch = next(flow)
        while True:
            replies = await connection.pipeline(batch)
            try:
                batch = flow.send(replies)
            except StopIteration as done:
                connection.protocol = int(done.value)
                return connection
    except BaseException:
        connection.close()
        raise


class AsyncConnection(asyncio.Protocol):
    """One auto-pipelined connection; made by ``connect``, used from the loop that made it."""

    def __init__(
        self,
        settings: WireSettings,
        *,
        on_push: PushHandler | None = None,
        max_in_flight: int = 1024,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.settings = settings
        self.protocol = settings.protocol
        self._loop = asyncio.get_running_loop()
        self._user_push = on_push
        self._core = RespCore(self._on_push if on_push is not None else None)
        self._window = max_in_flight
        self._timeout = settings.request_timeout
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._space: list[asyncio.Future[None]] = []
        self._error: ConnectivityError | None = None

    # -- the caller's side
    @property
    def closed(self) -> bool:
        """True once the connection failed or was closed: make a new one."""
        return self._error is not None

    @property
    def in_flight(self) -> int:
        """Requests sent or queued whose replies have not arrived."""
        return len(self._core.pending)

    async def execute(self, *args: Arg, timeout: float | None = None) -> object:
        """Send one request (with the others of this loop iteration), return its reply; an
        error reply raises ``ReplyError``, a connectivity failure a ``ConnectivityError``."""
        reply = await self._request(encode_command(args), 1, timeout)
        if type(reply) is ReplyError:
            raise reply
        return reply

    async def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, timeout: float | None = None
    ) -> list[object]:
        """Send the requests together, return their replies in order (``ReplyError`` values
        in the place of error replies)."""
        if not commands:
            return []
        data = b"".join([encode_command(command) for command in commands])
        reply = await self._request(data, len(commands), timeout)
        if len(commands) == 1:  # the core delivers a one-reply request's reply as is
            return [reply]
        assert isinstance(reply, list)
        return reply

    def close(self) -> None:
        """Drop the connection; requests in flight fail with ``ConnectionLost``."""
        self._drop(ConnectionLost(f"the connection to {self.settings.where} was closed by "
                                  "this client"))

    async def _request(self, data: bytes, expected: int, timeout: float | None) -> object:
        core = self._core
        if len(core.pending) >= self._window or self._error is not None:
            await self._wait_for_space()
        loop = self._loop
        deadline = loop.time() + (self._timeout if timeout is None else timeout)
        request = _Request(loop.create_future(), expected, deadline)
        core.enqueue(request)
        self._queue(data, deadline)
        try:
            return await request.future
        except asyncio.CancelledError:
            core.cancel(request)
            raise

    def _queue(self, data: bytes, deadline: float) -> None:
        """Buffer a request's bytes; the first of a loop iteration schedules the flush."""
        out = self._out
        out.append(data)
        if len(out) == 1:
            self._loop.call_soon(self._flush)
        if deadline < self._timer_at:
            self._arm(deadline)

    def _flush(self) -> None:
        out = self._out
        if not out or self._transport is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        try:
            self._transport.write(data)
        except (OSError, RuntimeError) as exc:  # uvloop: RuntimeError on a closed transport
            self._drop(connection_lost(self.settings.where, exc))

    async def _wait_for_space(self) -> None:
        while True:
            if self._error is not None:
                raise type(self._error)(*self._error.args)
            if len(self._core.pending) < self._window:
                return
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._space.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._space.remove(waiter)

    def _wake_space(self) -> None:
        waiters, self._space = self._space, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- deadlines
    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._check_deadlines)

    def _check_deadlines(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        earliest = self._core.earliest_deadline()
        if earliest is None:
            return
        if earliest <= self._loop.time():
            self._drop(connection_lost(self.settings.where, TimeoutError()))
        else:
            self._arm(earliest)

    # -- the transport's side (asyncio.Protocol)
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self._core.receive(data)
        except ProtocolError as exc:
            self._drop(exc)
            return
        if self._space and len(self._core.pending) < self._window:
            self._wake_space()

    def eof_received(self) -> bool | None:
        self._drop(connection_lost(self.settings.where, None))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop(connection_lost(self.settings.where, exc))

    def _drop(self, error: ConnectivityError) -> None:
        """Fail everything in flight with ``error`` and close the transport (once)."""
        if self._error is not None:
            return
        self._error = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._out.clear()
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()
        self._core.close(error)
        self._wake_space()

    def _on_push(self, message: list[object]) -> None:
        assert self._user_push is not None
        try:
            self._user_push(message)
        except Exception as exc:  # a handler's bug must not stall the replies behind the push
            self._loop.call_exception_handler(
                {"message": "push handler failed", "exception": exc, "protocol": self})

