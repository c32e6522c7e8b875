"""Circuit breaker: whether calls may use Redis, shared by the processes of a host.

The state lives in the location's state page (``host.HostState``), so an outage noticed by
one worker moves every worker of the host to the fallback at once, and none reads from Redis
again before the journal has been replayed there:

CLOSED: use Redis. Any connection error or timeout opens it at once (fail fast).
OPEN: every call goes to the fallback store; a background recoverer (``recovery``) probes
Redis with a backoff. Once Redis answers, the recoverer replays the outage journal
(DRAINING): reads stay on the fallback, writes go to Redis so the journal stops growing and
replay converges. Then CLOSED. A failure while draining re-opens it.

The page's generation changes when an outage starts and when it ends; a call compares it with
the generation its process last saw closed, one memory read (no lock, no I/O).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from cache_service._host.state import CLOSED_COUNT, GEN, OPENED, STARTED_NS, STATE, HostState

__all__ = ["ST_CLOSED", "ST_DRAINING", "ST_OPEN", "Breaker", "Gate"]


class Gate:
    """What one call may do now: ``Gate.REDIS`` or ``Gate.MEMORY`` (compare with ``is``).
    Not an Enum: before Python 3.12 reading an Enum member costs ~3x a plain class
    attribute, and every cache call reads one."""

    __slots__ = ("value",)
    REDIS: ClassVar[Gate]
    MEMORY: ClassVar[Gate]

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Gate.{self.value.upper()}"


Gate.REDIS, Gate.MEMORY = Gate("redis"), Gate("memory")
ST_CLOSED, ST_OPEN, ST_DRAINING = 0, 1, 2  # the page's STATE values (names: Breaker.CLOSED...)


class Breaker:
    """The breaker state of one location, on its host page; every method is thread-safe."""

    CLOSED, OPEN, DRAINING = "closed", "open", "draining"
    _NAMES: ClassVar[dict[int, str]] = {ST_CLOSED: CLOSED, ST_OPEN: OPEN, ST_DRAINING: DRAINING}

    def __init__(self, host: HostState, min_backoff: float, max_backoff: float) -> None:
        self.host = host
        self.page = host.page
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``draining``."""
        return self._NAMES.get(self.page[STATE], self.OPEN)

    @property
    def is_open(self) -> bool:
        """Whether reads are on the fallback (open or draining)."""
        return self.page[STATE] != ST_CLOSED

    @property
    def opened(self) -> int:
        """Outages begun (host-wide)."""
        return self.page[OPENED]

    @property
    def closed(self) -> int:
        """Recoveries completed (host-wide)."""
        return self.page[CLOSED_COUNT]

    @property
    def outage_started(self) -> float | None:
        """Wall time the current outage began, if one is going on."""
        return self.page[STARTED_NS] / 1e9 if self.is_open else None

    def failure(self) -> bool:
        """Record a failed Redis call; True when it ended a period of Redis use."""
        page = self.page
        if page[STATE] == ST_OPEN:
            return False
        with self.host.lock():
            state = page[STATE]
            if state == ST_OPEN:
                return False
            page[STATE] = ST_OPEN
            if state == ST_CLOSED:
                page[STARTED_NS] = time.time_ns()
                page[OPENED] += 1
                page[GEN] += 1
            return state == ST_CLOSED

    def draining(self) -> bool:
        """The recoverer reached Redis: replay begins and writes may use Redis again."""
        with self.host.lock():
            if self.page[STATE] != ST_OPEN:
                return False
            self.page[STATE] = ST_DRAINING
            return True

    def close_if(self, ready: Callable[[], bool]) -> bool:
        """Close (Redis in use again) if draining and ``ready()`` holds, atomically for the
        host: ``ready`` runs under the lock that journal writes take."""
        with self.host.lock():
            if self.page[STATE] != ST_DRAINING or not ready():
                return False
            self.page[STATE] = ST_CLOSED
            self.page[GEN] += 1
            self.page[CLOSED_COUNT] += 1
            return True

    def hold_open(self) -> None:
        """Open for good (``memory://`` targets never use Redis)."""
        with self.host.lock():
            self.page[STATE] = ST_OPEN
