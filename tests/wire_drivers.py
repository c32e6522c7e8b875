"""One blocking face for the connection layer's drivers, so a test runs over each of them.

``DRIVERS``: ``sync`` (``SyncConnection``), ``asyncio`` and ``uvloop`` (``AsyncConnection`` on
that loop, each call run to completion on a loop kept for the connection's life).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import uvloop

from cache_service._wire import AsyncConnection, SyncConnection, WireSettings, connect
from cache_service._wire.protocol import Arg, PushHandler

DRIVERS = ["sync", "asyncio", "uvloop"]
_T = TypeVar("_T")


class Handle:
    """A connection of either kind behind blocking calls."""

    def execute(self, *args: Arg) -> object:
        raise NotImplementedError

    def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[object]:
        raise NotImplementedError

    def wait_pushes(self, seconds: float) -> None:
        """Let pushes arrive for up to ``seconds`` (they go to the handler)."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SyncHandle(Handle):
    def __init__(self, settings: WireSettings, on_push: PushHandler | None) -> None:
        self.connection = SyncConnection(settings, on_push=on_push)

    def execute(self, *args: Arg) -> object:
        return self.connection.execute(*args)

    def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[object]:
        return self.connection.pipeline(commands)

    def wait_pushes(self, seconds: float) -> None:
        self.connection.read_pushes(seconds)

    @property
    def closed(self) -> bool:
        return self.connection.closed

    def close(self) -> None:
        self.connection.close()


class AsyncHandle(Handle):
    def __init__(self, settings: WireSettings, on_push: PushHandler | None, loop: str) -> None:
        self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop if loop == "uvloop"
                                     else None)
        try:
            self.connection: AsyncConnection = self.run(connect(settings, on_push=on_push))
        except BaseException:
            self.runner.close()
            raise

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return self.runner.run(coroutine)

    def execute(self, *args: Arg) -> object:
        return self.run(self.connection.execute(*args))

    def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[object]:
        return self.run(self.connection.pipeline(commands))

    def wait_pushes(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))

    @property
    def closed(self) -> bool:
        return self.connection.closed

    def close(self) -> None:
        self.connection.close()
        self.run(asyncio.sleep(0))  # let the transport finish closing
        self.runner.close()


def open_handle(driver: str, settings: WireSettings,
                on_push: PushHandler | None = None) -> Handle:
    """A connection made by ``driver`` (see ``DRIVERS``)."""
    if driver == "sync":
        return SyncHandle(settings, on_push)
    return AsyncHandle(settings, on_push, driver)


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll ``check`` until it is true or ``seconds`` pass."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return check()
