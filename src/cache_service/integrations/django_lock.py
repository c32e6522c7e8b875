"""django-redis' ``lock()``: redis-py's ``Lock`` API (and redis.asyncio's) over a DjangoCache.

The lock is the cache's own atomic ``add`` (SET NX PX on Redis) at the cache key, as
django-redis keeps its lock at the cache key. During an outage it is taken on the fallback
store, still by one holder at a time: across the host's processes on the host-shared store
(the check and the write are one host transaction), within the process with
``fallback="process"``; never across hosts. Release and extend
check the holder's token and then act: two round trips, where redis-py runs one script, so
choose a ``timeout`` longer than the work it guards (with any expiring lock, a holder that
outlives it has lost it).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace, TracebackType
from typing import Any

from redis.exceptions import LockError, LockNotOwnedError

from cache_service.integrations._common import FOREVER
from cache_service.integrations._django_plan import Flow, Plan, Sleep

__all__ = ["AsyncDjangoLock", "DjangoLock"]


class _LockState:
    """What a lock is (its key, timeout, polling) and its flows; the token of the holder is
    per thread when ``thread_local`` (as redis-py's)."""

    def __init__(self, drive: Callable[[Flow], Any], key: str, timeout: float | None, *,
                 sleep: float, blocking: bool, blocking_timeout: float | None,
                 thread_local: bool) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"lock timeout must be positive or None, got {timeout!r}")
        self._flow, self.name, self.timeout = drive, key, timeout
        self.sleep, self.blocking, self.blocking_timeout = sleep, blocking, blocking_timeout
        self._local: Any = threading.local() if thread_local else SimpleNamespace()
        self._local.token = None

    @property
    def token(self) -> str | None:
        return getattr(self._local, "token", None)

    def _acquire(self, sleep: float | None, blocking: bool | None,
                 blocking_timeout: float | None, token: str | None) -> Flow:
        token = uuid.uuid4().hex if token is None else str(token)
        sleep = self.sleep if sleep is None else sleep
        blocking = self.blocking if blocking is None else blocking
        wait = self.blocking_timeout if blocking_timeout is None else blocking_timeout
        stop = None if wait is None else time.monotonic() + wait
        ttl = FOREVER if self.timeout is None else self.timeout
        while True:
            if (yield Plan("add", (self.name, token, ttl))):  # atomic: SET NX PX
                self._local.token = token
                return True
            if not blocking or (stop is not None and time.monotonic() + sleep > stop):
                return False
            yield Sleep(sleep)

    def _owned(self) -> Flow:
        token = self.token
        return token is not None and (yield Plan("get", (self.name,))) == token

    def _release(self) -> Flow:
        if self.token is None:
            raise LockError("Cannot release a lock that's not owned or is already unlocked.",
                            lock_name=self.name)
        owned = yield from self._owned()
        self._local.token = None
        if not owned:
            raise LockNotOwnedError("Cannot release a lock that's no longer owned",
                                    lock_name=self.name)
        yield Plan("delete", (self.name,))

    def _still_held(self, action: str) -> Flow:
        """redis-py's checks before extending a lock (``action``): held, with a timeout,
        still ours."""
        if self.token is None:
            raise LockError(f"Cannot {action} an unlocked lock", lock_name=self.name)
        if self.timeout is None:
            raise LockError(f"Cannot {action} a lock with no timeout", lock_name=self.name)
        if not (yield from self._owned()):
            raise LockNotOwnedError(f"Cannot {action} a lock that's no longer owned",
                                    lock_name=self.name)

    def _extend(self, additional_time: float, replace_ttl: bool) -> Flow:
        yield from self._still_held("extend")
        left = 0.0 if replace_ttl else ((yield Plan("ttl", (self.name,))) or 0.0)
        yield Plan("touch", (self.name, left + additional_time))
        return True

    def _reacquire(self) -> Flow:
        yield from self._still_held("reacquire")
        yield Plan("touch", (self.name, self.timeout))
        return True


class DjangoLock(_LockState):
    """redis-py's ``Lock`` API over the cache: ``add`` (SET NX PX) takes it, on Redis or,
    during an outage, on the fallback store."""

    def acquire(self, sleep: float | None = None, blocking: bool | None = None,
                blocking_timeout: float | None = None, token: str | None = None) -> bool:
        return bool(self._flow(self._acquire(sleep, blocking, blocking_timeout, token)))

    def locked(self) -> bool:
        return bool(self._flow(_exists(self.name)))

    def owned(self) -> bool:
        return bool(self._flow(self._owned()))

    def release(self) -> None:
        self._flow(self._release())

    def extend(self, additional_time: float, replace_ttl: bool = False) -> bool:
        return bool(self._flow(self._extend(additional_time, replace_ttl)))

    def reacquire(self) -> bool:
        return bool(self._flow(self._reacquire()))

    def __enter__(self) -> DjangoLock:
        if self.acquire():
            return self
        raise LockError("Unable to acquire lock within the time specified", lock_name=self.name)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class AsyncDjangoLock(_LockState):
    """``DjangoLock`` awaited (redis.asyncio's ``Lock`` API, ``async with``)."""

    async def acquire(self, sleep: float | None = None, blocking: bool | None = None,
                      blocking_timeout: float | None = None, token: str | None = None) -> bool:
        return bool(await self._flow(
            self._acquire(sleep, blocking, blocking_timeout, token)))

    async def locked(self) -> bool:
        return bool(await self._flow(_exists(self.name)))

    async def owned(self) -> bool:
        return bool(await self._flow(self._owned()))

    async def release(self) -> None:
        await self._flow(self._release())

    async def extend(self, additional_time: float, replace_ttl: bool = False) -> bool:
        return bool(await self._flow(self._extend(additional_time, replace_ttl)))

    async def reacquire(self) -> bool:
        return bool(await self._flow(self._reacquire()))

    async def __aenter__(self) -> AsyncDjangoLock:
        if await self.acquire():
            return self
        raise LockError("Unable to acquire lock within the time specified", lock_name=self.name)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.release()


def _exists(name: str) -> Flow:
    return bool((yield Plan("exists", (name,))))
