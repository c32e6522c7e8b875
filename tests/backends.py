"""Where the contract suite runs: one builder per backend kind.

``test_contract.py`` is parametrized over ``BACKENDS``. A builder gets the pytest request and
returns ``(url, wrap)``: the URL services use, and a function that turns a CacheService-like
constructor into what the tests call (the async kind wraps AsyncCacheService so the same
blocking-style tests drive it). Add a kind by adding a builder here.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from cache_service import AsyncCacheService, CacheService

Builder = Callable[[pytest.FixtureRequest], tuple[str, Callable[..., Any]]]


def _memory(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    return f"memory://{uuid.uuid4().hex}", CacheService


def _redis(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    return request.getfixturevalue("redis_server").url, CacheService


def _cluster(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    return request.getfixturevalue("redis_cluster").cluster_url, CacheService


def _valkey(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    return request.getfixturevalue("valkey_server").url, CacheService


def _valkey_cluster(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    return request.getfixturevalue("valkey_cluster").cluster_url, CacheService


def _patient(url: str, **options: Any) -> str:
    """Fix 2 s timeouts on the target of ``url`` (its first service sets them; see
    ``conftest._patient_target``): a connect slowed by load must not open the breaker."""
    CacheService("session-target", url=url, socket_timeout=2.0, connect_timeout=2.0, **options)
    return url


def _sentinel(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    """The session's Sentinel deployment, on db 1: a location (and target) of its own, so
    the timeouts other Sentinel tests gave db 0's target do not apply."""
    deployment = request.getfixturevalue("sentinel_deployment")
    return _patient(deployment.url.removesuffix("/0") + "/1"), CacheService


def _valkey_sentinel(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    """The session's Valkey Sentinel deployment, on db 1, as ``_sentinel``."""
    deployment = request.getfixturevalue("valkey_sentinel")
    return _patient(deployment.url.removesuffix("/0") + "/1"), CacheService


def _tls(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    """The session's TLS-only server (trusting its throw-away CA), on db 1: a target of its
    own, as for ``_sentinel``."""
    server = request.getfixturevalue("tls_server")
    url = f"rediss://{server.host}:{server.port}/1?ssl_ca_certs={server.tls.ca_cert}"
    return _patient(url), CacheService


def _host_fallback(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    """Redis unreachable (a refused loopback port) for the whole session: every call runs on
    the host-shared SQLite fallback in a private state directory (checked by the ``make``
    fixture of test_contract.py). One target for the session, as one Redis is."""
    url = request.getfixturevalue("unreachable_redis")
    state_dir = str(request.getfixturevalue("host_fallback_state"))

    def construct(*args: Any, **kwargs: Any) -> CacheService:
        kwargs.setdefault("state_dir", state_dir)
        return CacheService(*args, **kwargs)

    return _patient(url, state_dir=state_dir), construct


def _redis_py(builder: Builder, db: int) -> Builder:
    """The same standalone server through redis-py's client (``connection="redis-py"``; our
    own layer is the default), on ``db``: a location (and target) of its own, whose first
    service fixes the option and 2 s timeouts."""

    def build(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
        url, construct = builder(request)
        base, _, query = url.partition("?")
        url = base.rpartition("/")[0] + f"/{db}" + (f"?{query}" if query else "")
        _patient(url, connection="redis-py")

        def on_redis_py(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("connection", "redis-py")
            return construct(*args, **kwargs)

        return url, on_redis_py

    return build


# -- async kinds: AsyncCacheService behind a blocking adapter ---------------------------------
T = TypeVar("T")


class LoopThread:
    """An event loop running in its own thread; ``call`` runs a coroutine there and blocks."""

    def __init__(self, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
                 ) -> None:
        self.loop = (loop_factory or asyncio.new_event_loop)()
        self._thread = threading.Thread(target=self.loop.run_forever, name="async-backend",
                                        daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (exceptions propagate)."""
        if threading.current_thread() is self._thread:  # would wait for itself forever
            coro.close()
            raise RuntimeError("the blocking adapter was called from its own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        """Stop the loop, join its thread and close it."""
        self.call(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class BlockingAsync:
    """An AsyncCacheService whose coroutine methods block: the contract suite drives it."""

    def __init__(self, service: AsyncCacheService, runner: LoopThread) -> None:
        self.service = service
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.service, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._runner.call(attr(*args, **kwargs))

        return blocking


def _near(builder: Builder) -> Builder:
    """The same backend with ``near_cache=True`` on every service it builds."""

    def build(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
        url, construct = builder(request)

        def near(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("near_cache", True)
            return construct(*args, **kwargs)

        return url, near

    return build


def _async(builder: Builder, loop: str = "asyncio") -> Builder:
    """The same backend, driven through AsyncCacheService on a loop of its own per test
    (``loop``: asyncio's default loop or uvloop's, which ``uvicorn[standard]`` runs)."""

    def build(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
        url, _ = builder(request)
        runner = LoopThread(uvloop.new_event_loop if loop == "uvloop" else None)
        made: list[AsyncCacheService] = []

        def construct(*args: Any, **kwargs: Any) -> BlockingAsync:
            service = AsyncCacheService(*args, **kwargs)
            made.append(service)
            return BlockingAsync(service, runner)

        def close() -> None:
            for service in made:  # the per-loop clients: no unclosed connection may remain
                runner.call(service.aclose())
            runner.close()

        request.addfinalizer(close)
        return url, construct

    return build


BACKENDS: dict[str, Builder] = {
    "memory": _memory,
    "redis": _redis,
    "cluster": _cluster,
    "async-memory": _async(_memory),
    "async-redis": _async(_redis),
    "async-cluster": _async(_cluster),
    "uvloop-memory": _async(_memory, "uvloop"),
    "uvloop-redis": _async(_redis, "uvloop"),
    "uvloop-cluster": _async(_cluster, "uvloop"),
    "near-redis": _near(_redis),
    "near-cluster": _near(_cluster),
    "uvloop-near-redis": _near(_async(_redis, "uvloop")),
    "async-near-cluster": _near(_async(_cluster)),
    "sentinel": _sentinel,
    "tls": _tls,
    "host-fallback": _host_fallback,
    # standalone on redis-py's client (our own layer is every location's default)
    "redis-py": _redis_py(_redis, 2),
    "async-redis-py": _async(_redis_py(_redis, 2)),
    "uvloop-redis-py": _async(_redis_py(_redis, 2), "uvloop"),
    "near-redis-py": _near(_redis_py(_redis, 2)),
    "redis-py-tls": _redis_py(_tls, 2),
    # the server matrix: Valkey standalone (sync, async, near), cluster (sync, near), Sentinel
    "valkey": _valkey,
    "async-valkey": _async(_valkey),
    "near-valkey": _near(_valkey),
    "valkey-cluster": _valkey_cluster,
    "near-valkey-cluster": _near(_valkey_cluster),
    "valkey-sentinel": _valkey_sentinel,
    "redis-py-valkey": _redis_py(_valkey, 2),
    "async-redis-py-valkey": _async(_redis_py(_valkey, 2)),
}

# Which kinds have Redis behind them (is_redis_available() should be True there).
REDIS_BACKED = {"redis", "cluster", "async-redis", "async-cluster", "uvloop-redis",
                "uvloop-cluster", "near-redis", "near-cluster", "uvloop-near-redis",
                "async-near-cluster", "sentinel", "tls", "redis-py", "async-redis-py",
                "uvloop-redis-py", "near-redis-py", "redis-py-tls", "valkey", "async-valkey",
                "near-valkey", "valkey-cluster", "near-valkey-cluster", "valkey-sentinel",
                "redis-py-valkey", "async-redis-py-valkey"}

# Kinds whose services run on the host-shared fallback store (Redis never reachable).
HOST_FALLBACK = {"host-fallback"}
