"""A read-only view of one service's runtime, for the exporters, the CLI, ``@cached`` and the
framework integrations: they read this instead of the services' and targets' private fields.

This module is the one sanctioned place outside ``core``, ``service``, ``aio`` and ``target``
that reads a service's internals (``_ctx``, ``_target``, ``_location``, ``_ready_made``).
A view is built per call (two slots: well under a microsecond, far less than the target
snapshot an exporter reads with it), so views are not cached; every property reads the live
state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cache_service._host.breaker import Gate
from cache_service._ops import write
from cache_service.stats import LATENCY_BOUNDS

if TYPE_CHECKING:
    from cache_service._near.store import NearStore
    from cache_service._ops.context import OpContext
    from cache_service._ops.protocol import Op
    from cache_service._runtime.target import Target
    from cache_service.config import Location
    from cache_service.core import ServiceCore

__all__ = ["RuntimeView", "runtime_view"]

T = TypeVar("T")
_EMPTY = [0] * (len(LATENCY_BOUNDS) + 1)


class Driver(Protocol):
    """What runs operations on a target (the target itself: every service of its location
    shares it). On a ready-made service with an invalid REDIS_URL each of these raises its
    ``ConfigurationError``, as every use of that service does."""

    def run(self, op: Op[T], loader: Callable[[], Any] | None = None) -> T:
        """Drive ``op`` to completion with the sync client (``loader`` for LOAD effects)."""

    async def arun(self, op: Op[T], loader: Callable[[], Any] | None = None) -> T:
        """Drive ``op`` to completion with the asyncio client of the running loop."""

    def sync_client(self) -> Any:
        """The blocking client, redis-py-shaped (the CLI's own commands: SCAN, TYPE, PING...)."""

    def unlink_owned(self, keys: list[bytes]) -> Op[int]:
        """An operation removing those of ``keys`` that hold one of our payloads."""


@dataclass(frozen=True)
class RuntimeView:
    """What the readers outside the core may know of a service and of its target (shared by
    every service naming the same Redis location). Every property reads the live state."""

    # not ``slots=True``: on 3.10/3.11 its frozen ``__setattr__`` raises a TypeError
    __slots__ = ("_core", "_target")
    _core: ServiceCore
    _target: Target

    # -- the service ----------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        """The service's namespace."""
        return self._core.prefix

    @property
    def location(self) -> Location:
        """Where Redis is (``kind``, ``describe()``; the source of secrets to scrub)."""
        return self._core._location

    @property
    def ready_made(self) -> bool:
        """A ready-made instance (``api_cache``...): exporters skip it until it counts."""
        return self._core._ready_made

    @property
    def near(self) -> NearStore | None:
        """This service's near cache (shared by the services of its target), if it has one."""
        return self._core._ctx.near

    def counts(self) -> dict[str, int]:
        """A snapshot of this service's own counters (hits, misses, sets...)."""
        return self._core._ctx.counters.snapshot()

    @property
    def context(self) -> OpContext:
        """What the service's operations work with (for operations run by ``driver``)."""
        return self._core._ctx

    def delete(self, keys: tuple[str, ...]) -> Op[int]:
        """The service's delete operation (keys without the prefix), for ``driver.run``."""
        return write.delete(self._core._ctx, keys)

    def invalidate_pattern(self, glob: str) -> Op[int]:
        """The service's invalidate-by-glob operation (a glob without the prefix)."""
        return write.invalidate_pattern(self._core._ctx, glob)

    # -- its target -----------------------------------------------------------------------
    @property
    def driver(self) -> Driver:
        """Runs operations on the service's target (``run``, ``arun``) and lends its client."""
        return self._target

    @property
    def target_id(self) -> int:
        """Equal for the views of services sharing one target (one per location and clock)."""
        return id(self._target)

    @property
    def attached(self) -> bool:
        """Whether the target was used (its host state, breaker and stores exist)."""
        return self._target.attached

    @property
    def on_fallback(self) -> bool:
        """Whether the target's breaker is open: operations go to the fallback store."""
        return bool(self._target.breaker.is_open)

    def uses_redis(self) -> bool:
        """Whether an operation started now would go to Redis (the target's read gate)."""
        return self._target.gate() is Gate.REDIS

    def target_snapshot(self) -> dict[str, Any]:
        """The target's ``snapshot()``: breaker, journal, fallback and near-cache figures."""
        return self._target.snapshot()

    def latency(self) -> dict[str, tuple[list[int], float]]:
        """Per operation that recorded one: bucket counts over ``stats.LATENCY_BOUNDS`` and
        +Inf (not cumulative), and the sum of seconds."""
        return {op: h.snapshot() for op, h in list(self._target.latency.items())
                if h.counts != _EMPTY}


def runtime_view(service: ServiceCore) -> RuntimeView:
    """The runtime view of ``service``. Building it never raises; on a ready-made service
    with an invalid REDIS_URL, what reads its target raises that ``ConfigurationError``."""
    return RuntimeView(service, service._target)
