"""Redis Sentinel discovery on our own connection layer (``_wire``): decisions without I/O,
and the two ways of asking every sentinel at once (threads, asyncio tasks).

A discovery runs one *flow* per sentinel, all at once, for at most ``discovery_timeout``;
the first flow that returns an address wins. A flow is a generator (the sans-I/O shape of
``_wire.protocol.handshake``): it yields ``(where, command)`` steps, the driver runs each on a
fresh short-lived connection and sends the reply back. The primary's flow asks
``SENTINEL GET-MASTER-ADDR-BY-NAME`` and then ``ROLE`` on the address named: a sentinel that
still names a demoted primary is not believed. ``SentinelBook`` remembers what was found, so
new data connections never wait for the sentinels; an address is forgotten when a connection
to it fails, and the next call asks again.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import MasterNotFoundError

from cache_service._redis.errors import SentinelsRefused, refused_by
from cache_service._redis.wire_client import redis_error
from cache_service._wire import SyncConnection, WireError, WireSettings, connect
from cache_service._wire.protocol import Arg

__all__ = ["Address", "Flow", "SentinelBook", "SentinelPlan", "ask_all", "ask_all_async",
           "no_primary", "primary_flow", "replicas_flow"]

Address = tuple[str, int]
Step = tuple[WireSettings, tuple[Arg, ...]]
Flow = Generator[Step, object, Any]

# Sentinel flags of a replica that must not be read from (redis-py's ``filter_slaves``).
_DOWN = frozenset({"s_down", "o_down", "disconnected"})


@dataclass(frozen=True)
class SentinelPlan:
    """Who to ask and how to reach what they name: each sentinel's settings, the data
    nodes' settings (credentials, db, TLS; the address is the sentinels'), the service."""

    service_name: str
    sentinels: tuple[WireSettings, ...]
    node: WireSettings
    discovery_timeout: float

    def node_at(self, address: Address) -> WireSettings:
        """The data node settings for ``address``."""
        host, port = address
        return replace(self.node, host=host, port=port)

    @property
    def sentinel_names(self) -> list[str]:
        """``host:port`` of every sentinel, in order (for messages)."""
        return [s.where for s in self.sentinels]


class NotNamed(LookupError):
    """A sentinel's answer that names no usable node (unknown service, a replica...)."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def primary_in(reply: object) -> Address | None:
    """The address in a ``GET-MASTER-ADDR-BY-NAME`` reply (None: the service is unknown)."""
    if isinstance(reply, list) and len(reply) == 2:
        return _text(reply[0]), int(_text(reply[1]))
    return None


def is_primary(role: object) -> bool:
    """Whether a ``ROLE`` reply is a primary's."""
    return isinstance(role, list) and bool(role) and _text(role[0]) == "master"


def replicas_in(reply: object) -> list[Address]:
    """The replicas a ``SENTINEL REPLICAS`` reply names that are up."""
    found: list[Address] = []
    for entry in reply if isinstance(reply, list) else []:
        if isinstance(entry, dict):
            fields = {_text(k): _text(v) for k, v in entry.items()}
        else:
            fields = {_text(k): _text(v) for k, v in zip(entry[::2], entry[1::2], strict=False)}
        if not _DOWN & set(fields.get("flags", "").split(",")):
            found.append((fields["ip"], int(fields["port"])))
    return found


def primary_flow(plan: SentinelPlan, index: int) -> Flow:
    """Ask sentinel ``index`` for the primary, then check with ``ROLE`` that it is one."""
    reply = yield plan.sentinels[index], ("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                          plan.service_name)
    address = primary_in(reply)
    if address is None:
        raise NotNamed(f"does not know {plan.service_name!r}")
    try:
        role = yield plan.node_at(address), ("ROLE",)
    except WireError as exc:
        raise NotNamed(f"named {address[0]}:{address[1]}, which did not answer ROLE "
                       f"({exc})") from exc
    if not is_primary(role):
        raise NotNamed(f"named {address[0]}:{address[1]}, which is not a primary")
    return address


def replicas_flow(plan: SentinelPlan, index: int) -> Flow:
    """Ask sentinel ``index`` for the live replicas (None when it names none)."""
    reply = yield plan.sentinels[index], ("SENTINEL", "REPLICAS", plan.service_name)
    return replicas_in(reply) or None


def no_primary(plan: SentinelPlan, errors: dict[int, BaseException]) -> MasterNotFoundError:
    """redis-py's error for a service no sentinel could name: each sentinel with what it
    answered (never a password: the errors name addresses only). ``SentinelsRefused`` (a
    misconfiguration, not an outage) when those that answered all refused our credentials
    or commands (WRONGPASS, NOAUTH, NOPERM); a sentinel that was not reached says nothing."""
    shown = {i: redis_error(e) if isinstance(e, WireError) else e for i, e in errors.items()}

    def said(exc: BaseException) -> str:
        if isinstance(exc, AuthenticationError):
            # the sentinel's own password (sentinel_password=), not the data nodes'
            return f"{type(exc).__name__} (check sentinel_password=)"
        return f"{type(exc).__name__}: {exc}"

    parts = [f"{where} - {said(shown[i])}" if i in shown else
             f"{where} - no answer within {plan.discovery_timeout:g}s"
             for i, where in enumerate(plan.sentinel_names)]
    message = f"No master found for {plan.service_name!r} : {', '.join(parts)}"
    codes = [refused_by(exc) for exc in shown.values()]
    answered = [exc for exc, code in zip(shown.values(), codes, strict=True) if code is None
                and not isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError))]
    refusals = [code for code in codes if code is not None]
    if refusals and not answered:
        return SentinelsRefused(message, refusals[0])
    return MasterNotFoundError(message)


class SentinelBook:
    """What the sentinels last said: the primary and the live replicas (None: ask again).
    Plain attribute writes: safe to share between threads."""

    def __init__(self) -> None:
        self.primary: Address | None = None
        self.replicas: list[Address] | None = None
        self._turn = 0

    def forget(self, address: Address) -> None:
        """A connection to ``address`` failed (or it refused writes): ask again next time."""
        if self.primary == address:
            self.primary = None
        if self.replicas is not None and address in self.replicas:
            self.replicas = None

    def switched(self, address: Address) -> None:
        """The sentinels announced a new primary (``+switch-master``)."""
        self.primary = address
        self.replicas = None

    def replica(self) -> Address | None:
        """The next live replica in turn (None: none known up, read from the primary)."""
        replicas = self.replicas
        if not replicas:
            return None
        self._turn = (self._turn + 1) % len(replicas)
        return replicas[self._turn]


# -- the drivers: every sentinel at once -------------------------------------------------------

def _run_sync(flow: Flow) -> Any:
    """Run ``flow``, each step on a fresh blocking connection (a step's error is thrown
    into the flow)."""
    step = next(flow)
    try:
        while True:
            settings, command = step
            try:
                connection = SyncConnection(settings)
                try:
                    reply = connection.execute(*command)
                finally:
                    connection.close()
            except WireError as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(reply)
    except StopIteration as done:
        return done.value


def ask_all(flows: Sequence[Flow], timeout: float) -> tuple[Any, dict[int, BaseException]]:
    """Run every flow at once (a thread each); the first result that is not None within
    ``timeout``, and the errors of the flows that failed before it."""
    answers: queue.SimpleQueue[tuple[int, Any, BaseException | None]] = queue.SimpleQueue()

    def run(index: int, flow: Flow) -> None:
        try:
            answers.put((index, _run_sync(flow), None))
        except Exception as exc:  # one sentinel's failure: the others may answer
            answers.put((index, None, exc))

    for index, flow in enumerate(flows):
        threading.Thread(target=run, args=(index, flow), daemon=True,
                         name=f"cache-service-sentinel-{index}").start()
    deadline = time.monotonic() + timeout
    errors: dict[int, BaseException] = {}
    for _ in flows:
        try:
            index, result, error = answers.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            break
        if error is not None:
            errors[index] = error
        elif result is not None:
            return result, errors
    return None, errors


async def _run_async(flow: Flow) -> Any:
    """``_run_sync`` on fresh asyncio connections."""
    step = next(flow)
    try:
        while True:
            settings, command = step
            try:
                connection = await connect(settings)
                try:
                    reply = await connection.execute(*command)
                finally:
                    connection.close()
            except WireError as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(reply)
    except StopIteration as done:
        return done.value


async def ask_all_async(flows: Sequence[Flow], timeout: float
                        ) -> tuple[Any, dict[int, BaseException]]:
    """``ask_all`` with a task per flow; the flows still running at the end are cancelled."""
    tasks = [asyncio.ensure_future(_run_async(flow)) for flow in flows]
    for task in tasks:  # errors after the winner are not read: never "never retrieved"
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    errors: dict[int, BaseException] = {}
    pending: set[asyncio.Future[Any]] = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, timeout=max(deadline - loop.time(), 0),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break
            for index, task in enumerate(tasks):
                if task in done:
                    error = task.exception()
                    if error is not None:
                        errors[index] = error
                    elif task.result() is not None:
                        return task.result(), errors
    finally:
        for left in pending:
            left.cancel()
    return None, errors
