"""Circuit breaker: decides whether a call may use Redis (pure: callers pass ``now``).

CLOSED: use Redis. Any connection error or timeout opens it at once (fail fast).
OPEN: every call goes to the memory store until ``retry_at``; then exactly one caller is
handed PROBE and tries Redis (PROBING). Once Redis answers, recovery replays the outage
journal (DRAINING): reads stay on memory, writes go to Redis so the journal stops growing
and replay converges. Then CLOSED. A failure while probing or draining re-opens it with the
backoff doubled, up to ``max_backoff``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import ClassVar

__all__ = ["Breaker", "Gate"]


class Gate:
    """What one call may do now: ``Gate.REDIS``, ``Gate.MEMORY`` or ``Gate.PROBE`` (compare
    with ``is``). Not an Enum: before Python 3.12 reading an Enum member costs ~3x a plain
    class attribute, and every cache call reads several."""

    __slots__ = ("value",)
    REDIS: ClassVar[Gate]
    MEMORY: ClassVar[Gate]
    PROBE: ClassVar[Gate]

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Gate.{self.value.upper()}"


Gate.REDIS, Gate.MEMORY, Gate.PROBE = Gate("redis"), Gate("memory"), Gate("probe")


class Breaker:
    """Thread-safe breaker state; every method takes the current monotonic time."""

    CLOSED, OPEN, PROBING, DRAINING = "closed", "open", "probing", "draining"

    def __init__(self, min_backoff: float, max_backoff: float, stuck_after: float = 30.0) -> None:
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stuck_after = stuck_after
        self.state = self.CLOSED
        self.backoff = min_backoff
        self.retry_at = 0.0
        self.probe_started = 0.0
        self.opened = 0
        self.closed = 0
        self.lock = threading.Lock()

    def gate(self, now: float, writing: bool = False) -> Gate:
        """Redis, memory, or (for one caller once the backoff has passed) a probe."""
        state = self.state
        if state is self.CLOSED or (writing and state is self.DRAINING):
            return Gate.REDIS
        if state is self.OPEN and now < self.retry_at:
            return Gate.MEMORY  # most calls of an outage: nothing to change, no lock needed
        with self.lock:
            state = self.state
            if (state is self.OPEN and now >= self.retry_at) or (
                state is not self.CLOSED and state is not self.OPEN
                and now - self.probe_started > self.stuck_after
            ):
                self.state = self.PROBING
                self.probe_started = now
                return Gate.PROBE
            if state is self.CLOSED or (writing and state is self.DRAINING):
                return Gate.REDIS
            return Gate.MEMORY

    def failure(self, now: float) -> bool:
        """Record a failed Redis call; True when this failure ended a period of Redis use."""
        with self.lock:
            state = self.state
            if state is self.OPEN:
                return False
            if state is self.CLOSED:
                self.backoff = self.min_backoff
                self.opened += 1
            else:
                self.backoff = min(self.backoff * 2, self.max_backoff)
            self.state = self.OPEN
            self.retry_at = now + self.backoff
            return state is self.CLOSED

    def draining(self) -> None:
        """The probe reached Redis; replay begins and writes may use Redis again."""
        with self.lock:
            if self.state is self.PROBING:
                self.state = self.DRAINING

    def close_if(self, ready: Callable[[], bool]) -> bool:
        """Close (Redis in use again) if still recovering and ``ready()`` holds, atomically."""
        with self.lock:
            if self.state not in (self.PROBING, self.DRAINING) or not ready():
                return False
            self.state = self.CLOSED
            self.backoff = self.min_backoff
            self.closed += 1
            return True

    def abandon(self, now: float) -> None:
        """A recovery stopped before finishing (e.g. cancelled): probe again soon."""
        with self.lock:
            if self.state in (self.PROBING, self.DRAINING):
                self.state = self.OPEN
                self.retry_at = now

    def hold_open(self) -> None:
        """Open for good (``memory://`` targets never probe)."""
        with self.lock:
            self.state = self.OPEN
            self.retry_at = float("inf")

    @property
    def is_open(self) -> bool:
        """Whether reads are on the memory store (open, probing or draining)."""
        return self.state is not self.CLOSED
