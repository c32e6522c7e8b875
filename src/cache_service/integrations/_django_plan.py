"""How DjangoCache runs a call: a plan (which service method, with what, and how its result
becomes Django's) or a flow of plans, executed on the CacheService or, awaited, on the
AsyncCacheService, so each rule of the Django backend is written once for both families.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import Callable, Generator
from typing import Any, NamedTuple, NoReturn

from cache_service.errors import SerializationError, ValueTooLargeError

__all__ = ["CLEAR", "NOTHING", "NOTHING_FAILED", "Flow", "Plan", "PlanRunner", "Sleep",
           "false", "no_failures", "nothing", "positive"]

log = logging.getLogger("cache_service")


def same(result: Any) -> Any:
    return result


def nothing(result: Any) -> None:
    return None


def false(result: Any) -> bool:
    return False


def positive(result: Any) -> bool:
    return bool(result > 0)


def no_failures(result: Any) -> list[Any]:
    return []  # Django's set_many returns the keys that failed: a fallback write never does


class Plan(NamedTuple):
    """One service call: the method's name ('' for none), its arguments, what Django gets
    from its result, and the values it encodes (to report pickle's own error)."""

    method: str
    args: tuple[Any, ...] = ()
    finish: Callable[[Any], Any] = same
    values: tuple[Any, ...] = ()
    oversize: Plan | None = None  # what to do instead when a value is over max_value_bytes


class Sleep(NamedTuple):
    """A pause inside a flow (between polls of a lock)."""

    seconds: float


# A flow: several plans in a row (and pauses), each result sent back; its return value is
# the call's.
Flow = Generator["Plan | Sleep", Any, Any]

NOTHING = Plan("", finish=nothing)
NOTHING_FAILED = Plan("", finish=no_failures)
CLEAR = Plan("clear_all", finish=nothing)


class PlanRunner:
    """Executes plans and flows: ``_run``/``_drive`` blocking, ``_arun``/``_adrive`` awaited
    (the only code that differs between the two method families)."""

    _service: Any
    _aservice: Any

    def _run(self, plan: Plan) -> Any:
        if not plan.method:
            return plan.finish(None)
        try:
            result = getattr(self._service, plan.method)(*plan.args)
        except ValueTooLargeError as exc:
            return self._run(_oversized(plan, exc))
        except SerializationError as exc:
            _unpicklable(plan.values, exc)
        return plan.finish(result)

    async def _arun(self, plan: Plan) -> Any:
        if not plan.method:
            return plan.finish(None)
        try:
            result = await getattr(self._aservice, plan.method)(*plan.args)
        except ValueTooLargeError as exc:
            return await self._arun(_oversized(plan, exc))
        except SerializationError as exc:
            _unpicklable(plan.values, exc)
        return plan.finish(result)

    def _drive(self, flow: Flow) -> Any:
        result = None
        try:
            while True:
                step = flow.send(result)
                if type(step) is Sleep:
                    time.sleep(step.seconds)
                    result = None
                else:
                    result = self._run(step)  # type: ignore[arg-type]
        except StopIteration as stop:
            return stop.value

    async def _adrive(self, flow: Flow) -> Any:
        result = None
        try:
            while True:
                step = flow.send(result)
                if type(step) is Sleep:
                    await asyncio.sleep(step.seconds)
                    result = None
                else:
                    result = await self._arun(step)  # type: ignore[arg-type]
        except StopIteration as stop:
            return stop.value


def _oversized(plan: Plan, exc: ValueTooLargeError) -> Plan:
    """A value over ``max_value_bytes`` is not cached (as memcached drops values over its
    limit): the key is removed, so no older value is served in its place, and it is logged."""
    if plan.oversize is None:
        raise exc
    log.warning("not cached: %s (raise OPTIONS['max_value_bytes'] to cache it)", exc)
    return plan.oversize


def _unpicklable(values: tuple[Any, ...], exc: SerializationError) -> NoReturn:
    """Raise pickle's own error for a value pickle refuses (as Django's backends do), else
    ``exc``."""
    for value in values:
        pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    raise exc
