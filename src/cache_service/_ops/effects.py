"""The effects a loading flow yields besides Redis requests, performed by the drivers
(``Target.run`` blocking, ``Target.arun`` under asyncio) with the caller's loader: run the
loader (``LOAD``), wait for another caller's load (``Wait``), pause between polls of a lock
(``Sleep``), hand a load to the background (``Spawn``), and honour a swallowed cancellation
before a background load (``CHECKPOINT``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cache_service._runtime.target import Target

__all__ = ["CHECKPOINT", "LOAD", "Effect", "Sleep", "Spawn", "Wait", "Waitable"]


class Waitable(Protocol):
    """A load in flight that callers can wait for (``loading.Flight``)."""

    def wait(self, timeout: float | None = None) -> Any: ...

    async def wait_async(self, timeout: float | None = None) -> Any: ...


class Effect:
    """Something a flow needs done outside Redis; blocking and asyncio forms."""

    def perform(self, loader: Callable[[], Any]) -> Any:
        """Do it, blocking."""
        raise NotImplementedError

    async def aperform(self, loader: Callable[[], Any]) -> Any:
        """Do it under asyncio."""
        raise NotImplementedError


class _Load(Effect):
    def perform(self, loader: Callable[[], Any]) -> Any:
        value = loader()
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            func = getattr(loader, "func", loader)  # @cached passes functools.partial(f, ...)
            raise TypeError(
                f"{getattr(func, '__qualname__', func)!s} returned an awaitable to a blocking "
                "call that cannot await it: declare it `async def` for @cached, or use "
                "AsyncCacheService.get_or_set"
            )
        return value

    async def aperform(self, loader: Callable[[], Any]) -> Any:
        value = loader()
        if inspect.isawaitable(value):
            value = await value
        return value


LOAD = _Load()


class _Checkpoint(Effect):
    """Before a background task loads: honour a cancellation that a dependency swallowed
    (``asyncio.run`` cancels every task at its end; a Redis client may absorb that cancel
    mid-request and return its reply, and the loader would then run on, unwaited for)."""

    def perform(self, loader: Callable[[], Any]) -> Any:
        return None

    async def aperform(self, loader: Callable[[], Any]) -> Any:
        cancelling = getattr(asyncio.current_task(), "cancelling", None)  # Python >= 3.11
        if cancelling is not None and cancelling():
            raise asyncio.CancelledError


CHECKPOINT = _Checkpoint()


class Sleep(Effect):
    """Pause (between polls of a lock held by another process)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def perform(self, loader: Callable[[], Any]) -> Any:
        time.sleep(self.seconds)

    async def aperform(self, loader: Callable[[], Any]) -> Any:
        await asyncio.sleep(self.seconds)


class Wait(Effect):
    """Wait for a flight led by another caller; the reply is its Outcome, or None when
    ``timeout`` seconds passed first."""

    __slots__ = ("flight", "timeout")

    def __init__(self, flight: Waitable, timeout: float | None = None) -> None:
        self.flight = flight
        self.timeout = timeout

    def perform(self, loader: Callable[[], Any]) -> Any:
        return self.flight.wait(self.timeout)

    async def aperform(self, loader: Callable[[], Any]) -> Any:
        return await self.flight.wait_async(self.timeout)


class Spawn(Effect):
    """Drive ``flow`` in the background with the caller's loader: a thread for a blocking
    caller, a task on its loop for an asyncio one. The reply: False if the runner refused
    it (``flow`` then never started)."""

    __slots__ = ("flow", "label", "target")

    def __init__(self, target: Target, flow: Generator[Any, Any, Any], label: str) -> None:
        self.target = target
        self.flow = flow
        self.label = label

    def perform(self, loader: Callable[[], Any]) -> Any:
        return self.target.spawn(self.flow, loader, self.label)

    async def aperform(self, loader: Callable[[], Any]) -> Any:
        return self.target.aspawn(self.flow, loader, self.label)
