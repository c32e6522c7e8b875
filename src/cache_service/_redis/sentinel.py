"""Redis Sentinel clients that remember the primary: hung sentinels cost a call nothing.

New connections go to the primary (and replicas) the sentinels last named; an address is
forgotten when a connection to it fails, and the next connection asks every sentinel at once,
bounded by one timeout.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelManagedConnection as AsyncSentinelConnection
from redis.asyncio.sentinel import SentinelManagedSSLConnection as AsyncSentinelSSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from cache_service._redis.cluster import _consume
from cache_service.config import Location, TargetOptions

T = TypeVar("T")
__all__ = ["SentinelClient"]

def _sentinel_failure(service_name: str, sentinels: list[Any],
                      errors: dict[int, BaseException], timeout: float) -> MasterNotFoundError:
    """redis-py's MasterNotFoundError text: each sentinel with what it answered."""
    parts = [f"{sentinel} - {errors[i]!r}" if i in errors else f"{sentinel} - no answer "
             f"within {timeout:g}s" for i, sentinel in enumerate(sentinels)]
    return MasterNotFoundError(f"No master found for {service_name!r} : {', '.join(parts)}")


Address = tuple[str, int]


class _KnownNodes:
    """What the sentinels last said for each service: the primary, and (for replica reads)
    the live replicas. Shared by both Sentinel twins."""

    known_primaries: dict[str, Address]
    known_replicas: dict[str, list[Address]]
    discovery_timeout: float

    def _remember_nothing(self, discovery_timeout: float) -> None:
        self.discovery_timeout = discovery_timeout
        self.known_primaries = {}
        self.known_replicas = {}

    def forget_node(self, service_name: str, address: Address) -> None:
        """A connection to ``address`` failed: if the sentinels named it (as the primary or
        a replica), ask them again on the next connection."""
        if self.known_primaries.get(service_name) == address:
            self.known_primaries.pop(service_name, None)
        if address in self.known_replicas.get(service_name, ()):
            self.known_replicas.pop(service_name, None)

    def _primary_in(self, service_name: str, masters: Any) -> Address | None:
        state = dict(masters).get(service_name)
        if state and self.check_master_state(state, service_name):  # type: ignore[attr-defined]
            return (self._force_master_ip or state["ip"], int(state["port"]))  # type: ignore[attr-defined]
        return None

    def _primary_found(self, service_name: str, address: Address | None,
                       errors: dict[int, BaseException]) -> Address:
        """Remember the primary the sentinels named, or raise what redis-py raises."""
        if address is None:
            raise _sentinel_failure(service_name, self.sentinels,  # type: ignore[attr-defined]
                                    errors, self.discovery_timeout)
        self.known_primaries[service_name] = address
        return address

    def _replicas_in(self, replicas: Any) -> list[Address] | None:
        alive = self.filter_slaves(replicas)  # type: ignore[attr-defined]
        return [(str(h), int(p)) for h, p in alive] or None


class _RememberingSentinel(_KnownNodes, Sentinel):
    """redis-py's Sentinel, remembering each service's nodes between connections.

    redis-py asks the sentinels, one after another, on every new connection: with hung
    sentinels each connection costs a socket timeout per sentinel even when the primary is
    fine. Here new connections reuse the last addresses found; one is forgotten when a
    connection to it fails, times out, or meets READONLY/NOREPLICAS (a failover), and the
    next connection asks every sentinel at once, for at most ``discovery_timeout``.
    """

    def __init__(self, sentinels: list[Address], *, discovery_timeout: float,
                 **kwargs: Any) -> None:
        Sentinel.__init__(self, sentinels, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
        self._remember_nothing(discovery_timeout)

    def discover_master(self, service_name: str) -> Address:
        """The remembered primary, or the first valid answer of the sentinels."""
        known = self.known_primaries.get(service_name)
        if known is not None:
            return known
        return self._primary_found(service_name, *self._first_answer(
            lambda s: s.sentinel_masters(), partial(self._primary_in, service_name)))

    def discover_slaves(self, service_name: str) -> list[Address]:
        """The remembered live replicas, or the first non-empty answer ([] if none)."""
        known = self.known_replicas.get(service_name)
        if known is not None:
            return known
        replicas, _ = self._first_answer(
            lambda s: s.sentinel_slaves(service_name), self._replicas_in)
        if replicas is not None:
            self.known_replicas[service_name] = replicas
        return replicas or []

    def rediscover(self, service_name: str) -> None:
        """Ask the sentinels now; keep the remembered primary if none answers."""
        address, _ = self._first_answer(
            lambda s: s.sentinel_masters(), partial(self._primary_in, service_name))
        if address is not None:
            self.known_primaries[service_name] = address
        self.known_replicas.pop(service_name, None)

    def _first_answer(self, query: Callable[[Any], Any], accept: Callable[[Any], T | None]
                      ) -> tuple[T | None, dict[int, BaseException]]:
        """Run ``query`` on every sentinel at once (a thread each); the first answer that
        ``accept`` turns into a result, within ``discovery_timeout``, and the errors."""
        answers: queue.SimpleQueue[tuple[int, Any, BaseException | None]] = queue.SimpleQueue()

        def ask(index: int, sentinel: Any) -> None:
            try:
                answers.put((index, query(sentinel), None))
            except Exception as exc:  # any failure of one sentinel: try the others
                answers.put((index, None, exc))

        sentinels = list(self.sentinels)
        for index, sentinel in enumerate(sentinels):
            threading.Thread(target=ask, args=(index, sentinel), daemon=True,
                             name=f"cache-service-sentinel-{index}").start()
        deadline = time.monotonic() + self.discovery_timeout
        errors: dict[int, BaseException] = {}
        for _ in sentinels:
            try:
                index, answer, error = answers.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if error is not None:
                errors[index] = error
                continue
            result = accept(answer)
            if result is not None:
                return result, errors
        return None, errors


class _AsyncRememberingSentinel(_KnownNodes, AsyncSentinel):
    """The asyncio twin of ``_RememberingSentinel`` (the sentinels are asked concurrently)."""

    def __init__(self, sentinels: list[Address], *, discovery_timeout: float,
                 **kwargs: Any) -> None:
        AsyncSentinel.__init__(self, sentinels, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
        self._remember_nothing(discovery_timeout)

    async def discover_master(self, service_name: str) -> Address:
        """The remembered primary, or the first valid answer of the sentinels."""
        known = self.known_primaries.get(service_name)
        if known is not None:
            return known
        return self._primary_found(service_name, *(await self._first_answer(
            lambda s: s.sentinel_masters(), partial(self._primary_in, service_name))))

    async def discover_slaves(self, service_name: str) -> list[Address]:
        """The remembered live replicas, or the first non-empty answer ([] if none)."""
        known = self.known_replicas.get(service_name)
        if known is not None:
            return known
        replicas, _ = await self._first_answer(
            lambda s: s.sentinel_slaves(service_name), self._replicas_in)
        if replicas is not None:
            self.known_replicas[service_name] = replicas
        return replicas or []

    async def _first_answer(self, query: Callable[[Any], Any], accept: Callable[[Any], T | None]
                            ) -> tuple[T | None, dict[int, BaseException]]:
        """Await ``query`` on every sentinel at once; the first answer that ``accept`` turns
        into a result, within ``discovery_timeout`` (the rest are cancelled), and the
        errors."""
        sentinels = list(self.sentinels)
        tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(query(s)) for s in sentinels]
        for task in tasks:
            task.add_done_callback(_consume)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.discovery_timeout
        errors: dict[int, BaseException] = {}
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(
                    pending, timeout=max(deadline - loop.time(), 0),
                    return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break
                for index, task in enumerate(tasks):
                    if task not in done:
                        continue
                    error = task.exception()
                    if error is not None:
                        errors[index] = error
                        continue
                    result = accept(task.result())
                    if result is not None:
                        return result, errors
        finally:
            for task in pending:
                task.cancel()
        return None, errors


def _forgets_node(exc: BaseException) -> bool:
    """This failure on a connection to a node the sentinels named means: ask them again."""
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(("NOREPLICAS", "READONLY"))


def _forget_address(connection: Any) -> None:
    """Make the connection's sentinel forget the address it is connected to."""
    pool = connection.connection_pool
    pool.sentinel_manager.forget_node(pool.service_name, (connection.host, connection.port))


class _SentinelConnection(SentinelManagedConnection):
    """A connection to a Sentinel-named node that makes the sentinel forget that address
    when it fails (so a failover is followed while hung sentinels cost nothing)."""

    def _forget(self) -> None:
        _forget_address(self)

    def connect_to(self, address: Any) -> None:
        """Connect to ``address``; forget it if that fails."""
        try:
            super().connect_to(address)  # type: ignore[no-untyped-call]
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send; forget the address if the connection failed."""
        try:
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """Read a reply; forget the address on a failure, READONLY or NOREPLICAS."""
        try:
            return super().read_response(*args, **kwargs)
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise


class _SentinelSSLConnection(_SentinelConnection, SentinelManagedSSLConnection):
    """``_SentinelConnection`` over TLS."""


class _AsyncSentinelConnection(AsyncSentinelConnection):
    """The asyncio twin of ``_SentinelConnection``."""

    def _forget(self) -> None:
        _forget_address(self)

    async def connect_to(self, address: Any) -> None:
        """Connect to ``address``; forget it if that fails."""
        try:
            await super().connect_to(address)  # type: ignore[no-untyped-call]
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send; forget the address if the connection failed."""
        try:
            await super().send_packed_command(command, check_health)
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """Read a reply; forget the address on a failure, READONLY or NOREPLICAS."""
        try:
            return await super().read_response(*args, **kwargs)
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise


class _AsyncSentinelSSLConnection(_AsyncSentinelConnection, AsyncSentinelSSLConnection):
    """``_AsyncSentinelConnection`` over TLS."""


class SentinelClient:
    """The clients of one Sentinel service, sync or asyncio, closed together.

    Every command goes to the primary that the sentinels name (asked again whenever a
    connection to the remembered primary fails; a demoted primary's READONLY becomes a
    ConnectionError). With ``read_from_replicas`` GETs go to a replica instead (redis-py
    falls back to the primary when no replica is up). ``close``/``aclose`` also close the
    connections to the sentinels.
    """

    def __init__(self, sentinel: Any, primary: Any, replica: Any | None,
                 service_name: str = "") -> None:
        self.sentinel = sentinel
        self.primary = primary
        self.replica = replica
        self.service_name = service_name
        # Bound once: attribute lookups stay as cheap as on a plain client.
        self.get = (replica if replica is not None else primary).get
        self.set = primary.set
        self.unlink = primary.unlink
        self.eval = primary.eval
        self.scan = primary.scan
        self.ping = primary.ping

    @classmethod
    def of(cls, sentinel: Any, location: Location, options: TargetOptions,
           connection_class: Any = None) -> SentinelClient:
        """Primary (and replica) clients of ``location``'s service through ``sentinel``."""
        name = location.service_name or ""
        # unbounded unless asked (redis-py 8 would stop at 100 concurrent callers)
        pool: dict[str, Any] = {"db": location.db,
                                "max_connections": options.max_connections or 2**31}
        if connection_class is not None:
            pool["connection_class"] = connection_class
        primary = sentinel.master_for(name, **pool)
        replica = sentinel.slave_for(name, **pool) if location.read_from_replicas else None
        return cls(sentinel, primary, replica, name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.primary, name)

    def _all(self) -> list[Any]:
        extra = [] if self.replica is None else [self.replica]
        return [self.primary, *extra, *self.sentinel.sentinels]

    def close(self) -> None:
        """Close the sync clients (primary, replica, sentinels)."""
        for client in self._all():
            client.close()

    async def aclose(self) -> None:
        """Close the asyncio clients (primary, replica, sentinels)."""
        for client in self._all():
            await client.aclose()


