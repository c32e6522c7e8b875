"""Clients for a standalone Redis over our own connection layer (``_wire``), shaped like the
redis-py clients the requests and the fast paths call (``connection="wire"``).

They answer the calls our operations make (GET, SET with PX/NX/GET, MGET, PEXPIRE, EXISTS,
UNLINK, SCAN, PING, EVALSHA/EVAL, raw commands, SETs in one write: ``set_all``) with redis-py's
return values, and raise redis-py's public exception classes, so that ``errors.classify_error`` and
everything above it see one vocabulary. What is not on the data path (the CLI's admin commands)
goes to a redis-py client made on first use (``side``); the near cache's tracking links are
``_wire.PushConnection``s of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    DataError,
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache_service._wire import (
    AsyncConnection,
    ConnectionLost,
    EncodeError,
    HandshakeError,
    ReplyError,
    ThreadConnections,
    WireError,
    WireSettings,
    WireTimeout,
    connect,
)

__all__ = ["AsyncWireClient", "WireClient", "redis_error"]

# Error replies redis-py raises as their own class, with the code cut from the message.
_BY_CODE: dict[str, type[Exception]] = {
    "NOSCRIPT": NoScriptError, "OOM": OutOfMemoryError, "NOPERM": NoPermissionError,
    "READONLY": ReadOnlyError, "EXECABORT": ExecAbortError, "LOADING": BusyLoadingError,
}
_AUTH = ("NOAUTH", "WRONGPASS")


def redis_error(exc: WireError) -> Exception:
    """The redis-py exception that stands for ``exc`` (its cause stays chained by the caller)."""
    if isinstance(exc, ReplyError):
        code, _, rest = exc.message.partition(" ")
        if code in _BY_CODE:
            return _BY_CODE[code](rest)
        if code in _AUTH:
            return AuthenticationError(exc.message)
        return ResponseError(exc.message)
    if isinstance(exc, HandshakeError):
        reply = exc.reply
        if reply is not None and (reply.code in _AUTH or "password" in reply.message):
            return AuthenticationError(reply.message)
        if reply is not None and reply.code == "NOPERM":
            return NoPermissionError(reply.message.partition(" ")[2])
        return RedisConnectionError(str(exc))
    if isinstance(exc, WireTimeout):
        return RedisTimeoutError(str(exc))
    if isinstance(exc, ConnectionLost):  # a connection open until now: "broken", retried once
        return RedisConnectionError(f"Connection lost: {exc}")
    if isinstance(exc, EncodeError):
        return DataError(str(exc))
    # ConnectFailed: refused, unreachable, TLS; the system's words too ("Connection refused")
    cause = exc.__cause__
    return RedisConnectionError(f"{exc} ({cause})" if cause is not None else str(exc))


def _set_args(name: Any, value: Any, px: int | None, nx: bool, get: bool, *,
              ex: int | None = None) -> list[Any]:
    args = ["SET", name, value]
    if ex is not None:
        args += ["EX", ex]
    if px is not None:
        args += ["PX", px]
    if nx:
        args.append("NX")
    if get:
        args.append("GET")
    return args


def _set_reply(reply: Any, get: bool) -> Any:
    return reply if get else (True if reply is not None else None)


def _scan_args(cursor: int, match: Any, count: Any) -> list[Any]:
    args = ["SCAN", cursor]
    if match is not None:
        args += ["MATCH", match]
    if count is not None:
        args += ["COUNT", count]
    return args


class _Side:
    """The redis-py client for what is off the data path, made on first use."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self.client: Any = None

    def get(self) -> Any:
        if self.client is None:
            self.client = self._build()
        return self.client


class WireClient:
    """The blocking client: one connection per thread (``_wire.ThreadConnections``)."""

    def __init__(self, settings: WireSettings, side: Callable[[], Any]) -> None:
        self.settings = settings
        self._connections = ThreadConnections(settings)
        self._side = _Side(side)

    def __getattr__(self, name: str) -> Any:
        # anything else (the CLI's TYPE, MEMORY USAGE, INFO...) goes through redis-py
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._side.get(), name)

    @property
    def side(self) -> Any:
        """The redis-py client for what is off the data path (the CLI's admin commands)."""
        return self._side.get()

    def execute_command(self, *args: Any) -> Any:
        try:
            return self._connections.get().execute(*args)
        except WireError as exc:
            raise redis_error(exc) from exc

    def get(self, name: Any) -> Any:
        try:
            return self._connections.get().execute("GET", name)
        except WireError as exc:
            raise redis_error(exc) from exc

    def set(self, name: Any, value: Any, *, ex: int | None = None, px: int | None = None,
            nx: bool = False, get: bool = False) -> Any:
        return _set_reply(self.execute_command(*_set_args(name, value, px, nx, get, ex=ex)), get)

    def mget(self, *keys: Any) -> Any:
        if len(keys) == 1 and isinstance(keys[0], (list, tuple)):
            keys = tuple(keys[0])
        return self.execute_command("MGET", *keys)

    def pexpire(self, name: Any, px: int) -> bool:
        return bool(self.execute_command("PEXPIRE", name, px))

    def exists(self, *names: Any) -> Any:
        return self.execute_command("EXISTS", *names)

    def unlink(self, *names: Any) -> Any:
        return self.execute_command("UNLINK", *names)

    def scan(self, cursor: int = 0, match: Any = None, count: Any = None) -> Any:
        next_cursor, keys = self.execute_command(*_scan_args(cursor, match, count))
        return int(next_cursor), keys

    def ping(self) -> bool:
        return self.execute_command("PING") in (b"PONG", "PONG")

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        return self.execute_command("EVALSHA", sha, numkeys, *args)

    def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        return self.execute_command("EVAL", script, numkeys, *args)

    def set_all(self, items: tuple[tuple[str, bytes], ...], px: int) -> list[Any]:
        """``SET k v PX px`` for every item, in one write (``PipelineSet``)."""
        try:
            replies = self._connections.get().pipeline(_set_all(items, px))
        except WireError as exc:
            raise redis_error(exc) from exc
        return _set_all_replies(replies)

    def drop_idle(self) -> None:
        """Close this thread's connection (the next call makes a fresh one)."""
        self._connections.close()

    def close(self) -> None:
        """Close every thread's connection and the side client."""
        self._connections.close_all()
        side, self._side.client = self._side.client, None
        if side is not None:
            side.close()


def _set_all(items: tuple[tuple[str, bytes], ...], px: int) -> list[list[Any]]:
    return [["SET", k, payload, "PX", px] for k, payload in items]


def _set_all_replies(replies: list[object]) -> list[Any]:
    """The replies of ``set_all``; the first error reply raises (as redis-py's pipeline)."""
    for reply in replies:
        if isinstance(reply, ReplyError):
            raise redis_error(reply) from reply
    return [_set_reply(reply, False) for reply in replies]


class AsyncWireClient:
    """The asyncio client of one event loop: one auto-pipelined connection, remade after a
    failure (concurrent callers share one connect)."""

    def __init__(self, settings: WireSettings, side: Callable[[], Any]) -> None:
        self.settings = settings
        self._connection: AsyncConnection | None = None
        self._connecting: asyncio.Future[AsyncConnection] | None = None
        self._side = _Side(side)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._side.get(), name)

    async def connection(self) -> AsyncConnection:
        """The open connection (connecting now if there is none)."""
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        pending = self._connecting
        if pending is None or (pending.done() and (pending.cancelled()
                                                  or pending.exception() is not None)):
            pending = self._connecting = asyncio.ensure_future(connect(self.settings))
        connection = await asyncio.shield(pending)
        if connection.closed and self._connecting is pending:
            self._connecting = None
            return await self.connection()
        self._connection = connection
        return connection

    async def execute_command(self, *args: Any) -> Any:
        try:
            connection = self._connection
            if connection is None or connection.closed:
                connection = await self.connection()
            return await connection.execute(*args)
        except WireError as exc:
            raise redis_error(exc) from exc

    async def get(self, name: Any) -> Any:
        return await self.execute_command("GET", name)

    async def set(self, name: Any, value: Any, *, ex: int | None = None,
                  px: int | None = None, nx: bool = False, get: bool = False) -> Any:
        reply = await self.execute_command(*_set_args(name, value, px, nx, get, ex=ex))
        return _set_reply(reply, get)

    async def mget(self, *keys: Any) -> Any:
        if len(keys) == 1 and isinstance(keys[0], (list, tuple)):
            keys = tuple(keys[0])
        return await self.execute_command("MGET", *keys)

    async def pexpire(self, name: Any, px: int) -> bool:
        return bool(await self.execute_command("PEXPIRE", name, px))

    async def exists(self, *names: Any) -> Any:
        return await self.execute_command("EXISTS", *names)

    async def unlink(self, *names: Any) -> Any:
        return await self.execute_command("UNLINK", *names)

    async def scan(self, cursor: int = 0, match: Any = None, count: Any = None) -> Any:
        next_cursor, keys = await self.execute_command(*_scan_args(cursor, match, count))
        return int(next_cursor), keys

    async def ping(self) -> bool:
        return await self.execute_command("PING") in (b"PONG", "PONG")

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        return await self.execute_command("EVALSHA", sha, numkeys, *args)

    async def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        return await self.execute_command("EVAL", script, numkeys, *args)

    async def set_all(self, items: tuple[tuple[str, bytes], ...], px: int) -> list[Any]:
        """``SET k v PX px`` for every item, in one write (``PipelineSet``)."""
        try:
            connection = await self.connection()
            replies = await connection.pipeline(_set_all(items, px))
        except WireError as exc:
            raise redis_error(exc) from exc
        return _set_all_replies(replies)

    async def drop_idle(self) -> None:
        """Close the connection if it failed (a healthy one is shared by every task)."""
        connection = self._connection
        if connection is not None and connection.closed:
            self._connection = None

    async def aclose(self) -> None:
        """Close the connection and the side client."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        side, self._side.client = self._side.client, None
        if side is not None:
            await side.aclose()
