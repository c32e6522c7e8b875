"""Small helpers shared by the test modules (not fixtures)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from .support.common import FLAVOURS

_counter = itertools.count()



def on_each(fixture: str) -> pytest.MarkDecorator:
    """Run the test once per server flavour (Redis, Valkey): ``fixture`` takes the flavour as
    its indirect parameter (``getattr(request, "param", "redis")``)."""
    return pytest.mark.parametrize(fixture, FLAVOURS, indirect=True)


def on_flavours(fixture: str, argnames: str, *, redis: list[Any],
                valkey: list[Any]) -> pytest.MarkDecorator:
    """Parametrize ``argnames`` (comma-separated) with ``redis`` cases on Redis and a chosen
    few ``valkey`` cases on Valkey (``fixture`` takes the flavour indirectly): the matrix for a
    test whose every case on Valkey would cost suite time without covering more."""
    names = [name.strip() for name in argnames.split(",")]

    def row(flavour: str, case: Any) -> tuple[Any, ...]:
        return (flavour, *(case if len(names) > 1 else (case,)))

    cases = [row("redis", c) for c in redis] + [row("valkey", c) for c in valkey]
    return pytest.mark.parametrize((fixture, *names), cases, indirect=[fixture])


on_each_server = on_each("fresh_redis_server")
"""The test runs once per flavour: its ``fresh_redis_server`` (and the ``chaos_proxy`` in
front of it) is that flavour's server (see conftest's server matrix)."""


def unique(name: str = "t") -> str:
    """A prefix no other test uses (valid for CacheService)."""
    return f"{name}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


class FakeClock:
    """A monotonic clock tests move by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def eventually(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def hammer(worker: Callable[[int], None], threads: int = 8) -> list[BaseException]:
    """Run ``worker(n)`` in ``threads`` threads at once; the exceptions they raised."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            worker(n)
        except BaseException as exc:  # pragma: no cover - returned to the test
            errors.append(exc)

    started = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    return errors


def import_offline(statements: str) -> subprocess.CompletedProcess[str]:
    """Run import ``statements`` in a fresh interpreter where any network connect exits."""
    code = (
        "import socket\n"
        "def boom(*a, **k):\n    raise SystemExit('network touched at import')\n"
        "socket.socket.connect = boom\nsocket.create_connection = boom\n"
        f"{statements}\nprint('ok')\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
