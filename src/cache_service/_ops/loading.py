"""Loading through the cache: single-flight, a cross-process lock, TTL jitter, stale values.

``get_or_set.get_or_set`` is ONE generator *flow*. Like every operation it yields
Redis requests; it also yields effects that only the caller's world can perform (``effects``,
re-exported here): ``LOAD`` (call the loader), ``Wait(flight)`` (until another caller's load of
the key has finished), ``Sleep(seconds)`` (between polls of a lock another process holds),
``Spawn`` (a load in the background) and ``CHECKPOINT``.

``Target.run`` (blocking) and ``Target.arun`` (asyncio) drive flows like every other
operation, performing the effects with the caller's loader; they are the only sync/async
twins, so every loading rule exists once.

Single-flight is per process and per ``(target, full key)``: the first caller to miss leads and
runs the loader, every concurrent caller (thread or asyncio task, on any loop) waits for its
outcome. Waiters SHARE the outcome: the leader's value (each waiter gets its own decoded copy)
or the leader's exception (nothing is cached), so a failing backend sees one call per burst
instead of one per waiter. If the leader is cancelled or interrupted (``BaseException``), the
waiters retry and one of them leads. The in-flight map holds only keys being loaded now.

Loading under pressure: with ``soft_timeout``/``hard_timeout`` the leader hands its load to
the background (``Spawn``) and waits for it like any waiter, up to a deadline
(``Wait(flight, seconds)``); with ``eager_refresh`` a hit past that fraction of its TTL
spawns one background refresh and returns at once. Values are then stored wrapped with their
freshness (the stale-while-revalidate envelope), which a read returns as ``Fresh``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import random
import threading
from collections.abc import Callable, Generator, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cache_service._ops.effects import CHECKPOINT, LOAD, Effect, Sleep, Spawn, Wait
from cache_service.codec import Codec, pack, unpack
from cache_service.config import MAX_TTL, shown
from cache_service.errors import ConfigurationError
from cache_service.forking import at_fork_child
from cache_service.keys import NAMESPACE

__all__ = [
    "CHECKPOINT",
    "LOAD",
    "RETRY",
    "SWR_MARK",
    "Effect",
    "Flight",
    "Flow",
    "Fresh",
    "LoadPolicy",
    "Outcome",
    "Sleep",
    "Spawn",
    "Stale",
    "Wait",
    "jittered",
    "join",
    "load_policy",
    "lock_key",
    "new_token",
]

T = TypeVar("T")
Flow = Generator[Any, Any, T]

# Compare-and-delete: release the lock only if it still holds our token.
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Marks a value stored with stale-while-revalidate metadata: [SWR_MARK, stamp, fresh_until,
# value]. The stamp must equal the payload header's, so user data can never pass for one.
SWR_MARK = "\x00cache_service:swr"


def lock_key(prefix: str, key: str) -> str:
    """Where the cross-process lock for ``key`` lives: ``cs::lock:{prefix}::{key}``.

    No prefix is empty, so ``cs::`` never starts a cache key: locks cannot meet user keys,
    and pattern invalidation (``cs:{prefix}::...``) never sees them. Locks expire by themselves.
    """
    return f"{NAMESPACE}:lock:{prefix}::{key}"


def new_token() -> str:
    """A lock token unique to one holder."""
    return os.urandom(12).hex()


def jittered(seconds: float, fraction: float, rand: Callable[[], float] = random.random) -> float:
    """``seconds`` shortened by up to ``fraction`` at random (never lengthened)."""
    return seconds * (1.0 - fraction * rand()) if fraction else seconds


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 <= value <= MAX_TTL:
        raise ConfigurationError(f"{name} must be a number of seconds from 0 to {MAX_TTL:.0e}, "
                                 f"got {shown(value)}")
    return float(value)


@dataclass(frozen=True)
class LoadPolicy:
    """How ``get_or_set`` / ``@cached`` load a missing value (validated, hashable)."""

    cache_none: bool = False
    jitter: float = 0.0
    lock: bool = False
    lock_ttl: float = 10.0
    lock_wait: float = 5.0
    stale_while_revalidate: float = 0.0
    stale_if_error: float | None = None
    soft_timeout: float | None = None
    hard_timeout: float | None = None
    eager_refresh: float | None = None
    # Derived in __post_init__ (the hot path reads them on every call):
    serve_stale_for: float = field(init=False)
    """Seconds past expiry a stale value is served at once while one caller refreshes."""
    stale_on_error_for: float = field(init=False)
    """Seconds past expiry a stale value is served when the loader fails."""
    keep_stale: float = field(init=False)
    """Seconds a value is kept past its TTL (0: no stale-while-revalidate metadata)."""
    lock_px: int = field(init=False)
    """The lock's expiry in milliseconds."""
    timed: bool = field(init=False)
    """A timeout is set: the leader loads in the background and waits up to a deadline."""
    read_mode: int = field(init=False)
    """How get_or_set reads (``read.get``'s ``stale``): 0 plain, 1 ``Stale`` past freshness,
    2 also ``Fresh`` for values stored with their freshness (eager refresh)."""

    def __post_init__(self) -> None:
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float)) or \
                not 0 <= self.jitter < 1:
            raise ConfigurationError(f"jitter must be a fraction in [0, 1), got {self.jitter!r}")
        serve = _non_negative("stale_while_revalidate", self.stale_while_revalidate)
        on_error = serve if self.stale_if_error is None else \
            _non_negative("stale_if_error", self.stale_if_error)
        _non_negative("lock_wait", self.lock_wait)
        if _non_negative("lock_ttl", self.lock_ttl) == 0:
            raise ConfigurationError("lock_ttl must be positive")
        soft = _timeout("soft_timeout", self.soft_timeout)
        hard = _timeout("hard_timeout", self.hard_timeout)
        if soft is not None and hard is not None and soft > hard:
            raise ConfigurationError(f"soft_timeout ({soft:g}s) must not exceed hard_timeout "
                                     f"({hard:g}s): the caller stops waiting at hard_timeout")
        eager = self.eager_refresh
        if eager is not None and (isinstance(eager, bool) or not isinstance(eager, (int, float))
                                  or not 0 < eager < 1):
            raise ConfigurationError("eager_refresh must be a fraction of the TTL strictly "
                                     f"between 0 and 1 (e.g. 0.8), got {shown(eager)}")
        keep = max(serve, on_error)
        for name, value in (("serve_stale_for", serve), ("stale_on_error_for", on_error),
                            ("keep_stale", keep),
                            ("lock_px", max(1, math.ceil(self.lock_ttl * 1000))),
                            ("timed", soft is not None or hard is not None),
                            ("read_mode", 2 if eager is not None else 1 if keep > 0 else 0)):
            object.__setattr__(self, name, value)


def _timeout(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if _non_negative(name, value) == 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got 0")
    return float(value)


@functools.lru_cache(maxsize=256, typed=True)  # typed: False must not pass as a cached 0
def load_policy(*, cache_none: bool = False, jitter: float = 0.0, lock: bool = False,
                lock_ttl: float = 10.0, lock_wait: float = 5.0,
                stale_while_revalidate: float = 0.0,
                stale_if_error: float | None = None, soft_timeout: float | None = None,
                hard_timeout: float | None = None,
                eager_refresh: float | None = None) -> LoadPolicy:
    """A validated policy, cached so per-call options cost a dict lookup."""
    return LoadPolicy(cache_none, jitter, lock, lock_ttl, lock_wait, stale_while_revalidate,
                      stale_if_error, soft_timeout, hard_timeout, eager_refresh)


class Stale:
    """A value past its freshness that is still kept for stale-while-revalidate."""

    __slots__ = ("fresh_until", "value")

    def __init__(self, value: Any, fresh_until: float) -> None:
        self.value = value
        self.fresh_until = fresh_until


class Fresh:
    """A fresh value stored with its freshness (read when the call may refresh it early)."""

    __slots__ = ("fresh_until", "value")

    def __init__(self, value: Any, fresh_until: float) -> None:
        self.value = value
        self.fresh_until = fresh_until


class Outcome:
    """How a flight ended: a value (copied for each waiter), an error, or "retry"."""

    __slots__ = ("_payload", "codec", "error", "key", "retry", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None,
                 retry: bool = False, codec: Codec | None = None, key: str = "") -> None:
        self.value = value
        self.error = error
        self.retry = retry
        self.codec = codec
        self.key = key
        self._payload: bytes | None = None

    def result(self) -> Any:
        """The value for one waiter (its own copy), or the leader's exception raised."""
        if self.error is not None:
            raise self.error
        value = self.value
        if value is None or type(value) in (str, int, float, bool, bytes) or self.codec is None:
            return value
        if self._payload is None:
            self._payload = pack(self.codec, value, self.key, 1 << 62, 0)
        return unpack(self.codec, self._payload, self.key)


RETRY = Outcome(retry=True)


class Flight:
    """One load in progress for a (target, key): its leader and the callers waiting on it."""

    __slots__ = ("_event", "_futures", "_lock", "outcome", "task", "thread")

    def __init__(self, thread: int, task: object | None) -> None:
        self.thread = thread
        self.task = task
        self.outcome: Outcome | None = None
        self._event = threading.Event()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock = threading.Lock()

    def would_deadlock(self, task: object | None) -> bool:
        """Whether waiting here could never end: the leader is (under) this very caller."""
        me = threading.get_ident()
        if task is None:  # a blocking wait would also block a leader on this thread's loop
            return self.thread == me
        return self.task is task or (self.task is None and self.thread == me)

    def settle(self, outcome: Outcome) -> None:
        """Publish the outcome and wake every waiter, on whatever thread or loop it waits."""
        with self._lock:
            self.outcome = outcome
            futures, self._futures = self._futures, []
        self._event.set()
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there
                loop.call_soon_threadsafe(_wake, future)

    def adopt(self) -> None:
        """The caller running this now leads the flight (a background load took it over)."""
        self.thread = threading.get_ident()
        try:
            self.task = asyncio.current_task()
        except RuntimeError:  # no loop runs in this thread
            self.task = None

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """Block until settled (None: ``timeout`` seconds passed first)."""
        if not self._event.wait(timeout):
            return None
        assert self.outcome is not None
        return self.outcome

    async def wait_async(self, timeout: float | None = None) -> Outcome | None:
        """Await until settled (None: ``timeout`` seconds passed first); cancelling this
        await leaves the flight untouched."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.outcome is not None:
                return self.outcome
            future: asyncio.Future[None] = loop.create_future()
            entry = (loop, future)
            self._futures.append(entry)
        try:
            if timeout is None:
                await future
            elif not await _settled_by(loop, future, loop.time() + timeout):
                return None
        finally:
            with self._lock:
                if entry in self._futures:
                    self._futures.remove(entry)
        assert self.outcome is not None
        return self.outcome


# Event loops wait for I/O in whole milliseconds, rounded up (epoll, libuv): a timer due at a
# random phase of a millisecond (the loop woke for other I/O since it was set) fires 0-1 ms
# late, ~0.5 ms on average, on top of the wake-up itself. A deadline is therefore waited
# for as a timer this much earlier, then by yielding to the loop until it has passed.
TIMER_GRAIN = 0.001


async def _settled_by(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None],
                      deadline: float) -> bool:
    """Whether ``future`` finished before ``deadline`` (the loop's clock); returns as soon
    as the deadline passed, not up to a millisecond later."""
    early = deadline - TIMER_GRAIN - loop.time()
    if early > 0:
        done, _ = await asyncio.wait((future,), timeout=early)
        if done:
            return True
    while not future.done() and loop.time() < deadline:
        await asyncio.sleep(0)  # the last stretch: other tasks and I/O run meanwhile
    return future.done()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# Keyed by (target, full key): a target is any hashable object identifying one Redis location.
_flights: dict[tuple[Hashable, str], Flight] = {}
_flights_lock = threading.Lock()


def _forget_flights() -> None:
    """In a forked child: the parent's loads never land here (their leaders are not ours)."""
    global _flights_lock
    _flights_lock = threading.Lock()
    _flights.clear()


at_fork_child(_forget_flights, 10)


def join(target: Hashable, key: str, task: object | None) -> tuple[Flight, bool]:
    """The flight loading ``key``: ``(flight, True)`` when this caller must lead it."""
    slot = (target, key)
    with _flights_lock:
        flight = _flights.get(slot)
        if flight is None:
            flight = _flights[slot] = Flight(threading.get_ident(), task)
            return flight, True
    return flight, False


def land(target: Hashable, key: str, flight: Flight, outcome: Outcome) -> None:
    """End ``flight``: forget it (new misses start a new one), then wake its waiters."""
    with _flights_lock:
        if _flights.get((target, key)) is flight:
            del _flights[(target, key)]
    flight.settle(outcome)


def in_flight() -> int:
    """How many keys are being loaded now in this process (for tests and stats)."""
    return len(_flights)
