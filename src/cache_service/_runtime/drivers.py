"""The drivers: ``run`` drives an operation with the blocking client, ``arun`` with the
asyncio client of the running loop. They are the only sync/async twins, and time each call
by its operation's name.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any, TypeVar

from cache_service._ops.protocol import Op
from cache_service._ops.requests import REQUESTS
from cache_service._redis.backend import CONNECTIVITY_ERRORS, classify_error, drop_idle
from cache_service._runtime.clients import Clients
from cache_service._runtime.outages import Outages
from cache_service.stats import Latency

T = TypeVar("T")

__all__ = ["Drivers"]


class Drivers(Outages, Clients):
    """Runs operations against the target's clients."""

    # An op yields Redis requests (``_ops.requests``) and, for loading flows, effects
    # (``loading``: run the loader, wait for another caller's load, sleep). A Redis failure
    # is accounted and thrown into the op as ``Unavailable``; any other exception (a
    # loader's error, a cancellation) is thrown in as it is, so the op can release what it
    # holds. The loops are written out, with no helper frame per request: every frame
    # between the caller and redis-py is re-entered on each resume of an await.
    def run(self, op: Op[T], loader: Callable[[], Any] | None = None) -> T:
        """Drive ``op`` to completion with the sync client (``loader`` for LOAD effects)."""
        started = perf_counter()
        try:
            request: Any = op.send(None)
            while True:
                reply: Any = None
                error: BaseException | None = None
                try:
                    if type(request) in REQUESTS:
                        client = None
                        try:
                            client = self.sync_client()
                            reply = request.send(client)
                        except CONNECTIVITY_ERRORS as exc:
                            if client is None or classify_error(exc) != "broken":
                                error = self.failed(exc)
                            else:  # a pooled connection the server closed: once, fresh
                                try:
                                    drop_idle(client)
                                    reply = request.send(client)
                                except CONNECTIVITY_ERRORS as again:
                                    error = self.failed(again)
                    else:
                        reply = request.perform(loader)
                except BaseException as exc:
                    error = exc
                request = op.send(reply) if error is None else op.throw(error)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            op.close()
            self.record_latency(op, perf_counter() - started)

    async def arun(self, op: Op[T], loader: Callable[[], Any] | None = None) -> T:
        """Drive ``op`` to completion with the asyncio client of the running loop."""
        started = perf_counter()
        try:
            request: Any = op.send(None)
            while True:
                reply: Any = None
                error: BaseException | None = None
                try:
                    if type(request) in REQUESTS:
                        client = None
                        try:
                            client = self._async_client()
                            reply = await request.send(client)
                        except CONNECTIVITY_ERRORS as exc:
                            if client is None or classify_error(exc) != "broken":
                                error = self.failed(exc)
                            else:  # a pooled connection the server closed: once, fresh
                                try:
                                    await drop_idle(client)
                                    reply = await request.send(client)
                                except CONNECTIVITY_ERRORS as again:
                                    error = self.failed(again)
                    else:
                        reply = await request.aperform(loader)
                except BaseException as exc:
                    error = exc
                request = op.send(reply) if error is None else op.throw(error)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            op.close()
            self.record_latency(op, perf_counter() - started)

    def record_latency(self, op: Op[Any], seconds: float) -> None:
        """Time a call by its operation's name (``put`` -> ``set``); internal runs (the
        recovery probe) are not calls; a get's slow paths (discard, tagged) count as get."""
        name: str = getattr(op, "__name__", "call")
        latency = self._latency_of.get(name, _UNKNOWN)
        if latency is _UNKNOWN:
            public = _OPERATION_NAMES.get(name, name.lstrip("_"))
            latency = None if public is None else self.latency.setdefault(public, Latency())
            self._latency_of[name] = latency
        if latency is not None:
            latency.record(seconds)


_UNKNOWN: Any = object()
# Generator names that are not the public call's name (None: not a call, e.g. the probe).
_OPERATION_NAMES: dict[str, str | None] = {
    "_recover": None, "unlink_owned": None, "scan_unlink": None, "unlink_keys": None,
    "discard": "get", "check_tagged": "get", "is_available": "is_redis_available",
    "put": "set", "put_encoded": "set",
}
