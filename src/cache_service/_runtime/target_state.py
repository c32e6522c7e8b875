"""The state of one target (one Redis location in this process), and how it attaches to
the host-shared state on first use. The target's behaviours build on it, one concept per
module: ``clients``, ``outages``, ``drivers``, ``replay``, and ``target`` itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from cache_service._host.breaker import Breaker, Gate
from cache_service._host.journal import Guard, Journal
from cache_service._host.memory_store import MemoryStore
from cache_service._host.shared_store import SharedStore
from cache_service._host.state import GEN, NEAR_USED, PAGE_BYTES, HostState, host_state, resolve_dir
from cache_service._near.store import NearStore
from cache_service._near.tracker import Tracker
from cache_service._ops import remove
from cache_service._ops.protocol import Op, Request
from cache_service._ops.requests import Call, Ping
from cache_service._redis.backend import ping_primaries
from cache_service._runtime.recovery import Recovery
from cache_service.config import Location, TargetOptions
from cache_service.stats import Latency, TargetCounters

log = logging.getLogger("cache_service")

__all__ = ["UNATTACHED", "TargetState"]


class TargetState:
    """Every field of a target, its host wiring (``attach``), and which key-removal
    operation suits its deployment."""

    def __init__(self, location: Location, options: TargetOptions,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.location = location
        self.options = options
        self.clock = clock
        self.counters = TargetCounters()
        # call latency per operation (see ``record_latency``); "get" is timed by the services
        self.get_latency = Latency()
        self.get_ticks = itertools.count()  # CacheService.get's Redis hits: 1 in 16 is timed
        self.set_latency = Latency()  # CacheService.set's fast path times every call
        self.latency: dict[str, Latency] = {"get": self.get_latency, "set": self.set_latency}
        self._latency_of: dict[str, Latency | None] = {}
        self.misconfiguration: str | None = None
        self.last_reply_error: str | None = None  # code and message: never a key
        self._reply_logged: dict[str, float] = {}  # code -> when last logged (monotonic)
        self._denials: set[str] = set()  # refusals named in the log (each once)
        self.near: NearStore | None = None  # made by the first service asking for one
        self.tracker: Tracker | None = None
        self.state_problem: str | None = None
        self._next_diagnosis = 0.0
        self.guard = NO_GUARD
        self._closed_gen = -1  # the generation this process last saw closed: Redis is usable
        self._seen_gen = -1
        self._page: memoryview = UNATTACHED
        self._attach_lock = threading.Lock()
        # Held while an outage write journals, and while ``degrade`` swaps the host state, so
        # that no journaled invalidation lands in a journal already left behind.
        self._state_lock = threading.RLock()
        self.recovery: Recovery  # set by ``Target``: it recovers the whole target
        self.host: HostState
        self.breaker: Breaker
        self.journal: Journal
        self.fallback: MemoryStore | SharedStore
        if location.kind == "memory":
            self.attach()
        self._client: Any = None
        # Per loop, a client and an async generator whose ``finally`` closes it: the loop
        # finalizes it in ``shutdown_asyncgens()`` (``asyncio.run`` does), so a client left open
        # by the application is still closed before its loop is. Loops closed without that are
        # swept when a new loop asks (``_drop_async_clients``).
        self._aclients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._aclosers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        self._last_aclient: tuple[Any, Any] = (None, None)  # (loop, client) used last
        self._client_lock = threading.Lock()
        # A cluster is back only when every primary answers, not just one node.
        self.ping_request: Request = (
            Call(ping_primaries) if location.kind == "cluster" else Ping())

    def attach(self) -> None:
        """Open the host state, breaker, journal and fallback store (on first use, so that
        building a service touches no file)."""
        if self._page is not UNATTACHED:
            return
        with self._attach_lock:
            if self._page is not UNATTACHED:
                return
            location, options = self.location, self.options
            memory_only = location.kind == "memory"
            self.host = host_state(location,
                                   None if memory_only else resolve_dir(options.state_dir))
            self.state_problem = self.host.problem
            self._build_state()
            if memory_only:
                self.breaker.hold_open()
                self.gate = _memory_gate
            self._seen_gen = self.host.page[GEN]
            if not self.breaker.is_open:
                self.guard = self.journal.guard()
            self._page = self.host.page
            self._lend_page()

    @property
    def attached(self) -> bool:
        """Whether the target was used (its host state, breaker and stores exist)."""
        return self._page is not UNATTACHED

    def _build_state(self) -> None:
        options = self.options
        self.breaker = Breaker(self.host, options.breaker_min_backoff, options.breaker_max_backoff)
        self.journal = Journal(self.host, options.journal_max_entries, options.late_write_guard)
        if options.fallback == "host" and self.host.shared:
            self.fallback = SharedStore(self.host, options.max_memory_entries,
                                      options.max_memory_bytes)
        else:
            self.fallback = MemoryStore(options.max_memory_entries, options.max_memory_bytes,
                                      self.clock)

    def _lend_page(self) -> None:
        """Give the near cache the host page it checks, and mark the host as having one
        (writers then move key slots): once the page exists and the near cache does."""
        if self.near is not None and self._page is not UNATTACHED:
            self._page[NEAR_USED] = 1
            self.near.page = self._page

    # -- key removal (the operations are in ``_ops.remove``) ---------------------------------
    def scan_unlink(self, pattern: str) -> Op[int]:
        """SCAN for ``pattern`` and unlink the matches that hold our payloads; a count."""
        return remove.scan_unlink(self.location.kind == "cluster", pattern)

    def unlink_owned(self, keys: list[bytes]) -> Op[int]:
        """Unlink those of ``keys`` that hold our payloads; a count."""
        return remove.unlink_owned(self.location.kind == "cluster", keys)

    def unlink_keys(self, keys: list[str]) -> Op[int]:
        """UNLINK ``keys``; a count."""
        return remove.unlink_keys(keys)  # a cluster client splits it: per node


def _memory_gate(writing: bool = False) -> Gate:
    """The gate of a ``memory://`` target: always the memory store."""
    return Gate.MEMORY


NO_GUARD = Guard()
# The page of a target not yet attached: its generation never matches, so the first call
# takes the slow path, which attaches.
UNATTACHED = memoryview(bytearray(PAGE_BYTES)).cast("q")
UNATTACHED[GEN] = -2
