"""Sentinel clients on our own connection layer (``connection="wire"``): they route each call
to a standalone wire client of the node the sentinels named, and follow failovers.

Shaped like ``wire_client.WireClient``/``AsyncWireClient`` (the same methods, redis-py's
return values and exception classes). The primary is remembered (``SentinelBook``), so calls
never wait for the sentinels while it answers. A connectivity failure forgets it (that call
fails; the next asks every sentinel at once, bounded by one discovery timeout). A READONLY
reply means the primary moved: the sentinels are asked at once and the call is sent once
more to the new primary, so a failover the client did not see is not an outage. If they
still name the demoted node (``ROLE`` says replica), the READONLY stands: an outage, the
breaker journals and replays. NOREPLICAS (``min-replicas-to-write``) forgets the primary
and stands, as with redis-py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from cache_service._redis.wire_client import AsyncWireClient, WireClient
from cache_service._redis.wire_sentinel import (
    Address,
    SentinelBook,
    SentinelPlan,
    ask_all,
    ask_all_async,
    no_primary,
    primary_flow,
    replicas_flow,
)
from cache_service._redis.wire_sentinel_watch import unwatch, watch
from cache_service._wire import ConnectivityError, ReplyError

__all__ = ["AsyncSentinelWireClient", "SentinelWireClient", "after_failure", "moved",
           "on_primary"]

# How long "no replica is up" is believed before replica reads ask the sentinels again.
NO_REPLICA_FOR = 5.0
# Node clients kept; past this, those of nodes the sentinels no longer name are closed (a
# deployment whose nodes change address at each failover must not leak connections).
MAX_NODES = 16


def moved(book: SentinelBook, address: Address, exc: BaseException) -> bool:
    """After ``exc`` on ``address``: forget the address when the failure says the node is
    gone or not (or no longer) a writable primary; True when the reply says the primary
    moved (READONLY): ask the sentinels and send the call once more."""
    cause = exc.__cause__
    if isinstance(cause, ConnectivityError):
        book.forget(address)
    elif isinstance(cause, ReplyError) and cause.code in ("READONLY", "NOREPLICAS"):
        book.forget(address)
        return cause.code == "READONLY"
    return False


# What a call flow asks its driver for: the primary (``DISCOVER``: ask every sentinel at
# once), or ``(address, call)``: a call ``(method, args, kwargs)`` on that node's client.
DISCOVER = "discover"
Call = tuple[str, tuple[Any, ...], dict[str, Any]]
CallFlow = Generator[tuple[Address, Call] | str, Any, Any]


def on_primary(book: SentinelBook, call: Call) -> CallFlow:
    """Send ``call`` to the primary, asking the sentinels first when none is known."""
    address = book.primary
    if address is None:
        address = yield DISCOVER
    try:
        return (yield address, call)
    except RedisError as exc:
        return (yield from after_failure(book, address, exc, call))


def after_failure(book: SentinelBook, address: Address, exc: RedisError, call: Call
                  ) -> CallFlow:
    """A call to ``address`` failed with ``exc``: raise it, or (READONLY: the primary moved)
    ask the sentinels and send the call once more to the new primary."""
    if not moved(book, address, exc):
        raise exc
    try:
        again = yield DISCOVER
    except RedisError:
        raise demoted(address) from exc
    if again == address:
        raise demoted(address) from exc
    return (yield again, call)


def demoted(address: Address) -> RedisConnectionError:
    """The error of a call that met READONLY where no other primary is named yet."""
    return RedisConnectionError(
        f"{address[0]}:{address[1]}, the primary the sentinels named, is now a replica "
        "(READONLY) and they name no other primary yet")


class _Routing:
    """What both twins share: the plan, the book, a client per node (each with its plain
    redis-py side client, made on first use, for what is off the data path)."""

    def __init__(self, plan: SentinelPlan, side: Callable[[Address], Any], client: type,
                 read_from_replicas: bool) -> None:
        self.plan = plan
        self.service_name = plan.service_name
        self.book = SentinelBook()
        self.read_from_replicas = read_from_replicas
        self._client = client
        self._nodes: dict[Address, Any] = {}
        self._nodes_lock = threading.Lock()
        self._no_replica_since = -NO_REPLICA_FOR
        self._side = side
        self._watching = False

    def _found(self, address: Address) -> Address:
        """Remember the primary a discovery found; follow the service's switches from now
        on (the first discovery that worked starts the subscription)."""
        self.book.primary = address
        if not self._watching:
            self._watching = True
            watch(self.plan, self.book)
        return address

    def _stop_watching(self) -> None:
        if self._watching:
            self._watching = False
            unwatch(self.plan, self.book)

    def __getattr__(self, name: str) -> Any:
        # what is off the data path (the CLI's admin commands) goes to a plain redis-py
        # client of the primary
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.side_of(self.book.primary or self._primary_now()), name)

    def _primary_now(self) -> Address:
        raise RedisConnectionError(f"the sentinels of {self.service_name!r} have not named "
                                   "a primary yet")

    def side_of(self, address: Address) -> Any:
        """The plain redis-py client of the node at ``address`` (made on first use)."""
        return self.node(address).side

    @property
    def primary_address(self) -> Address | None:
        """The primary the sentinels last named (None: not known now)."""
        return self.book.primary

    def node(self, address: Address) -> Any:
        """The standalone wire client of ``address`` (made on first use)."""
        node = self._nodes.get(address)
        if node is None:
            with self._nodes_lock:
                node = self._nodes.get(address)
                if node is None:
                    if len(self._nodes) >= MAX_NODES:
                        self._retire_unnamed(keep=address)
                    node = self._nodes[address] = self._client(
                        self.plan.node_at(address), partial(self._side, address))
        return node

    def _retire_unnamed(self, keep: Address) -> None:
        """Close the node clients of addresses the sentinels do not name now (lock held)."""
        named = {keep, self.book.primary, *(self.book.replicas or ())}
        for address in [a for a in self._nodes if a not in named]:
            self._retire(self._nodes.pop(address))

    def _retire(self, node: Any) -> None:
        raise NotImplementedError

    def _every_node(self) -> list[Any]:
        with self._nodes_lock:
            return list(self._nodes.values())

    def _replicas_wanted(self) -> bool:
        """Whether replica reads should ask the sentinels for replicas now."""
        return self.book.replicas is None or (
            not self.book.replicas
            and time.monotonic() - self._no_replica_since > NO_REPLICA_FOR)

    def _replicas_found(self, found: list[Address] | None) -> None:
        self.book.replicas = found or []
        if not found:
            self._no_replica_since = time.monotonic()

    def _flows(self, flow: Callable[[SentinelPlan, int], Any]) -> list[Any]:
        return [flow(self.plan, index) for index in range(len(self.plan.sentinels))]


class SentinelWireClient(_Routing):
    """The blocking Sentinel client (each node's client: one connection per thread)."""

    def __init__(self, plan: SentinelPlan, side: Callable[[Address], Any], *,
                 read_from_replicas: bool = False) -> None:
        super().__init__(plan, side, WireClient, read_from_replicas)

    def _primary_now(self) -> Address:
        return self.discover()

    def _retire(self, node: Any) -> None:
        node.close()

    def discover(self) -> Address:
        """Ask every sentinel at once for the primary (checked with ROLE); remember it.
        Raises redis-py's ``MasterNotFoundError`` (a ConnectionError) when none names one
        within the discovery timeout."""
        found, errors = ask_all(self._flows(primary_flow), self.plan.discovery_timeout)
        if found is None:
            raise no_primary(self.plan, errors)
        return self._found(found)

    def rediscover(self) -> None:
        """Ask the sentinels now (the prober); keep the remembered primary if none answers."""
        found, _ = ask_all(self._flows(primary_flow), self.plan.discovery_timeout)
        if found is not None:
            self._found(found)
        self.book.replicas = None

    def _on_primary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        address = self.book.primary
        if address is not None:  # the common case: one call, no flow
            try:
                return getattr(self.node(address), method)(*args, **kwargs)
            except RedisError as exc:
                return self._run(after_failure(self.book, address, exc, (method, args, kwargs)))
        return self._run(on_primary(self.book, (method, args, kwargs)))

    def _run(self, flow: CallFlow) -> Any:
        """Drive a call flow: the discoveries and calls here, the decisions in the flow."""
        reply: Any = None
        error: RedisError | None = None
        while True:
            try:
                step = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as done:
                return done.value
            try:
                if isinstance(step, str):
                    reply = self.discover()
                else:
                    address, (method, args, kwargs) = step
                    reply = getattr(self.node(address), method)(*args, **kwargs)
                error = None
            except RedisError as exc:
                error = exc

    def get(self, name: Any) -> Any:
        if self.read_from_replicas:
            if self._replicas_wanted():
                found, _ = ask_all(self._flows(replicas_flow), self.plan.discovery_timeout)
                self._replicas_found(found)
            address = self.book.replica()
            if address is not None:
                try:
                    return self.node(address).get(name)
                except RedisError as exc:
                    moved(self.book, address, exc)
                    raise
        return self._on_primary("get", name)

    def execute_command(self, *args: Any) -> Any:
        return self._on_primary("execute_command", *args)

    def set(self, name: Any, value: Any, **kwargs: Any) -> Any:
        return self._on_primary("set", name, value, **kwargs)

    def mget(self, *keys: Any) -> Any:
        return self._on_primary("mget", *keys)

    def pexpire(self, name: Any, px: int) -> bool:
        return bool(self._on_primary("pexpire", name, px))

    def exists(self, *names: Any) -> Any:
        return self._on_primary("exists", *names)

    def unlink(self, *names: Any) -> Any:
        return self._on_primary("unlink", *names)

    def scan(self, cursor: int = 0, match: Any = None, count: Any = None) -> Any:
        return self._on_primary("scan", cursor, match, count)

    def ping(self) -> bool:
        return bool(self._on_primary("ping"))

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        return self._on_primary("evalsha", sha, numkeys, *args)

    def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        return self._on_primary("eval", script, numkeys, *args)

    def set_all(self, items: tuple[tuple[str, bytes], ...], px: int) -> list[Any]:
        """``SET k v PX px`` for every item, in one write, on the primary."""
        return self._on_primary("set_all", items, px)  # type: ignore[no-any-return]

    def drop_idle(self) -> None:
        """Close this thread's connections (the next call makes fresh ones)."""
        for node in self._every_node():
            node.drop_idle()

    disconnect = drop_idle

    def close(self) -> None:
        """Close every node's connections and side clients; stop following switches."""
        self._stop_watching()
        for node in self._every_node():
            node.close()


class AsyncSentinelWireClient(_Routing):
    """The asyncio Sentinel client of one event loop (each node: one auto-pipelined
    connection); concurrent callers share one discovery."""

    def __init__(self, plan: SentinelPlan, side: Callable[[Address], Any], *,
                 read_from_replicas: bool = False) -> None:
        super().__init__(plan, side, AsyncWireClient, read_from_replicas)
        self._discovery: asyncio.Future[Address] | None = None
        self._closing: set[asyncio.Future[None]] = set()

    def _retire(self, node: Any) -> None:
        closing = asyncio.ensure_future(node.aclose())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def discover(self) -> Address:
        """Ask every sentinel at once (one discovery shared by the callers waiting for it);
        raises ``MasterNotFoundError`` as the blocking client does."""
        pending = self._discovery
        if pending is None or pending.done():
            pending = self._discovery = asyncio.ensure_future(self._ask())
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())  # all left
        return await asyncio.shield(pending)

    async def _ask(self) -> Address:
        found, errors = await ask_all_async(self._flows(primary_flow),
                                            self.plan.discovery_timeout)
        if found is None:
            raise no_primary(self.plan, errors)
        return self._found(found)

    async def _on_primary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        address = self.book.primary
        if address is not None:  # the common case: one call, no flow
            try:
                return await getattr(self.node(address), method)(*args, **kwargs)
            except RedisError as exc:
                flow = after_failure(self.book, address, exc, (method, args, kwargs))
                return await self._run(flow)
        return await self._run(on_primary(self.book, (method, args, kwargs)))

    async def _run(self, flow: CallFlow) -> Any:
        """The blocking client's ``_run``, awaiting."""
        reply: Any = None
        error: RedisError | None = None
        while True:
            try:
                step = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as done:
                return done.value
            try:
                if isinstance(step, str):
                    reply = await self.discover()
                else:
                    address, (method, args, kwargs) = step
                    reply = await getattr(self.node(address), method)(*args, **kwargs)
                error = None
            except RedisError as exc:
                error = exc

    async def get(self, name: Any) -> Any:
        if self.read_from_replicas:
            if self._replicas_wanted():
                found, _ = await ask_all_async(self._flows(replicas_flow),
                                               self.plan.discovery_timeout)
                self._replicas_found(found)
            address = self.book.replica()
            if address is not None:
                try:
                    return await self.node(address).get(name)
                except RedisError as exc:
                    moved(self.book, address, exc)
                    raise
        return await self._on_primary("get", name)

    async def execute_command(self, *args: Any) -> Any:
        return await self._on_primary("execute_command", *args)

    async def set(self, name: Any, value: Any, **kwargs: Any) -> Any:
        return await self._on_primary("set", name, value, **kwargs)

    async def mget(self, *keys: Any) -> Any:
        return await self._on_primary("mget", *keys)

    async def pexpire(self, name: Any, px: int) -> bool:
        return bool(await self._on_primary("pexpire", name, px))

    async def exists(self, *names: Any) -> Any:
        return await self._on_primary("exists", *names)

    async def unlink(self, *names: Any) -> Any:
        return await self._on_primary("unlink", *names)

    async def scan(self, cursor: int = 0, match: Any = None, count: Any = None) -> Any:
        return await self._on_primary("scan", cursor, match, count)

    async def ping(self) -> bool:
        return bool(await self._on_primary("ping"))

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        return await self._on_primary("evalsha", sha, numkeys, *args)

    async def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        return await self._on_primary("eval", script, numkeys, *args)

    async def set_all(self, items: tuple[tuple[str, bytes], ...], px: int) -> list[Any]:
        """``SET k v PX px`` for every item, in one write, on the primary."""
        return await self._on_primary("set_all", items, px)  # type: ignore[no-any-return]

    async def drop_idle(self) -> None:
        """Forget failed connections (healthy ones are shared by every task)."""
        for node in self._every_node():
            await node.drop_idle()

    async def disconnect(self) -> None:
        """Close every node's connection now; the next call makes fresh ones (for tests
        of what a new connection costs)."""
        for node in self._every_node():
            await node.aclose()  # a node client connects again on its next call

    async def aclose(self) -> None:
        """Close every node's connection and side client; stop following switches."""
        self._stop_watching()
        for node in self._every_node():
            await node.aclose()
