"""One target per Redis location per process: clients, breaker, fallback store and journal.

Every service naming the same location shares its target, so an outage seen by one is known
to all and two services with one prefix see the same data whether Redis is up or down.

Operations (``_ops``; their protocol is ``_ops.protocol``) are generators that yield Redis
requests (``_ops.requests``: named types that send themselves to a client) and receive
replies; ``Target.run`` drives them with the sync client and ``Target.arun`` with the
asyncio one (``drivers``). That is the only place sync and async differ.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from cache_service._host.shared_store import SharedStore
from cache_service._host.state import mark_written
from cache_service._near.store import NearCache, NearStore
from cache_service._near.tracker import Tracker
from cache_service._ops.protocol import Op
from cache_service._runtime.background import RUNNER
from cache_service._runtime.recovery import Recovery
from cache_service._runtime.replay import Replay
from cache_service._runtime.target_state import UNATTACHED
from cache_service.config import Location, TargetOptions
from cache_service.forking import renew_locks
from cache_service.redis_glob import compile_glob

log = logging.getLogger("cache_service")

__all__ = ["Target"]


class Target(Replay):
    """Shared state for one Redis location; drives operations against it. Its parts, one
    concept per module: ``target_state`` (fields, host wiring), ``clients``, ``outages``
    (gate, failures, outage writes, degrade), ``drivers`` (run/arun), ``replay`` (recovery
    as an operation); here: construction, near-cache wiring, fork handling, stats."""

    def __init__(self, location: Location, options: TargetOptions,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(location, options, clock)
        self.recovery = Recovery(self)

    def __repr__(self) -> str:
        state = "unattached" if self._page is UNATTACHED else self.breaker.state
        return f"<Target {self.location.describe()} {state}>"

    def enable_near(self, config: NearCache, head: str) -> NearStore:
        """The near cache of this target (made with ``config`` by the first service that asks;
        later ones share it), now also tracking keys under ``head``."""
        with self._attach_lock:
            if self.near is None:
                self.near = NearStore(config)
                self._lend_page()
                self.tracker = Tracker(self, self.near)
            elif config != self.near.config:
                log.debug("target %s keeps the near-cache bounds of the first service that "
                          "asked", self.location.describe())
            assert self.tracker is not None
            self.tracker.add_prefix(head)
            return self.near

    def spawn(self, op: Op[Any], loader: Callable[[], Any], label: str) -> bool:
        """Drive ``op`` with ``run`` on a background thread (bounded: False if refused)."""
        return RUNNER.start(lambda: self.run(op, loader), self.counters, label)

    def aspawn(self, op: Op[Any], loader: Callable[[], Any], label: str) -> bool:
        """Drive ``op`` with ``arun`` as a task on the running loop (bounded: False if
        refused)."""
        return RUNNER.astart(self.arun(op, loader), self.counters, label)

    def written(self, keys: list[str] | None, pattern: str | None) -> None:
        """This process wrote ``keys`` (or ``pattern``): near-cache copies go now, not when
        the invalidation comes back from Redis: this process's at once, every other
        process's of the host by the key's slot on the page."""
        mark_written(self._page, None if pattern is not None else keys or [])
        near = self.near
        if near is not None:
            if pattern is not None:
                near.invalidate_matching(compile_glob(pattern))
            else:
                near.invalidate(keys or [])

    def after_fork(self) -> None:
        """In a forked child: fresh locks (of the target, its fallback store and latencies);
        no client of the parent's (their connections are the parent's too)."""
        renew_locks(self, *self.latency.values(), *([self.fallback] if self.attached else []))
        self._client = None
        # The parent's per-loop clients stay referenced, unused: collecting one would close its
        # transport, which unregisters the socket from the epoll instance the child shares
        # with the parent's loop (the parent would stop hearing that socket's replies).
        _INHERITED.append((self._aclients, self._aclosers))
        self._aclients, self._aclosers = {}, {}
        self._last_aclient = (None, None)

    def snapshot(self) -> dict[str, Any]:
        """Breaker, journal, fallback-store and counter figures for ``stats()``."""
        self.attach()
        return {
            "location": self.location.describe(),
            "backend": "memory" if self.breaker.is_open else "redis",
            "fallback": "host" if isinstance(self.fallback, SharedStore) else "process",
            "state_dir": self.host.describe(),
            "state_problem": self.state_problem,
            "misconfiguration": self.misconfiguration,
            "last_reply_error": self.last_reply_error,
            "breaker_state": self.breaker.state,
            "breaker_opened": self.breaker.opened,
            "breaker_closed": self.breaker.closed,
            "journal_size": _or_none(lambda: len(self.journal)),
            "journal_overflows": self.journal.overflows,
            "memory_entries": len(self.fallback),
            "memory_bytes": self.fallback.nbytes,
            "memory_evictions": self.fallback.evictions,
            **(self.near.snapshot() if self.near is not None else {}),
            **({"near_refused": self.tracker.refused} if self.tracker is not None else {}),
            **self.counters.snapshot(),
        }


def _or_none(read: Callable[[], int]) -> int | None:
    """A figure for stats(); None when the host database cannot be read."""
    try:
        return read()
    except sqlite3.Error:
        return None


_INHERITED: list[Any] = []  # in a forked child: the parent's per-loop clients, never used
