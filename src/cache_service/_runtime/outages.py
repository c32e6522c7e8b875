"""Outage handling of a target: the gate every call asks (Redis or the fallback store), the
accounting of failed requests (an outage opens the breaker; an error reply fails one request),
writes while Redis is out (journaled with their fallback write), and the switch to
per-process state when the host files fail (``degrade``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from cache_service._host.breaker import ST_CLOSED, ST_DRAINING, Gate
from cache_service._host.journal import clear_all
from cache_service._host.shared_store import SharedStore
from cache_service._host.state import GEN, STATE, HostState, host_clock
from cache_service._ops.protocol import ReplyError, Unavailable, WrongType
from cache_service._redis.backend import (
    OUTAGES,
    classify_error,
    describe_error,
    misconfiguration_message,
    refusal_message,
    reply_code,
    reply_text,
)
from cache_service._runtime.target_state import NO_GUARD, UNATTACHED, TargetState
from cache_service.codec import STAMPER
from cache_service.redis_glob import compile_glob

log = logging.getLogger("cache_service")
R = TypeVar("R")

__all__ = ["Outages"]

_REPLY_LOG_EVERY = 60.0  # seconds between warnings about one error-reply code


class Outages(TargetState):
    """The gate, failure accounting, outage writes and degrade."""

    def gate(self, writing: bool = False) -> Gate:
        """May this call use Redis now? See ``Breaker``: one memory read while it may."""
        if self._page[GEN] == self._closed_gen:
            return Gate.REDIS
        return self._slow_gate(writing)

    def _slow_gate(self, writing: bool) -> Gate:
        page = self._page
        if page is UNATTACHED:
            self.attach()
            page = self._page
        gen = page[GEN]
        if gen != self._seen_gen:
            self._observe(gen)
        state = page[STATE]
        if state == ST_CLOSED:
            self._closed_gen = gen
            return Gate.REDIS
        if not self.recovery.running:
            self.recovery.ensure_running()
        return Gate.REDIS if writing and state == ST_DRAINING else Gate.MEMORY

    def _observe(self, gen: int) -> None:
        """This process sees an outage begin or end (perhaps noticed by another process):
        its own copies are from another period; after a recovery, tombstones apply."""
        self._seen_gen = gen
        self.fallback.new_epoch()
        if self.tracker is not None:
            self.tracker.relink()
        if not self.breaker.is_open:
            self.guard = self.journal.guard()

    def guard_blocks(self, key: str, stamp: int) -> bool:
        """Whether a tombstone marks the payload stamped ``stamp`` at ``key`` as a late write."""
        now = host_clock()
        if now >= self.guard.until:
            self.guard = NO_GUARD
            return False
        if self.guard.blocks(key, stamp, now):
            next(self.counters.stale_blocked)
            return True
        return False

    def failed(self, exc: BaseException) -> BaseException:
        """Account a failed request; returns what to throw into the operation: ``WrongType``
        or ``ReplyError`` for this request only, ``Unavailable`` after an outage (the breaker
        counts it)."""
        kind = classify_error(exc, self.location.kind)
        if kind == "wrongtype":
            return WrongType(str(exc))
        if kind not in OUTAGES:
            return self._refused(kind, exc)
        if kind == "misconfigured":
            self.attach()
            self._misconfigured(misconfiguration_message(exc, self.location))
        self._outage("unreachable", describe_error(exc), quiet=kind == "misconfigured")
        return Unavailable(str(exc))

    def refused_twice(self, error: ReplyError) -> None:
        """Redis refused a write and then the UNLINK of the value it replaces (BUSY, LOADING:
        a state that ends by itself, after which that value would be served): the one case
        where an error reply opens the breaker, so the write is journaled and replayed."""
        self._outage("refuses every request", str(error), quiet=False)

    def _outage(self, what: str, why: str, quiet: bool) -> None:
        """Count a failure on the breaker; say so (unless ``quiet``) when an outage begins."""
        self.attach()
        next(self.counters.errors)
        if self.breaker.failure():
            self._observe(self._page[GEN])
            if not quiet:
                log.warning(
                    "Redis at %s %s (%s); serving from the %s fallback store, retrying in the "
                    "background", self.location.describe(), what, why,
                    "host-shared" if isinstance(self.fallback, SharedStore) else "in-memory")
        else:
            log.debug("Redis at %s still %s: %s", self.location.describe(), what, why)
        self.recovery.ensure_running()

    def _refused(self, kind: str, exc: BaseException) -> ReplyError:
        """Account an error reply (or an unencodable request): counted, its code and message
        in ``stats()``; a setting to fix (NOPERM, a replica) logged once per distinct
        problem, any other code at most once a minute."""
        next(self.counters.reply_errors)
        code = reply_code(exc) or type(exc).__name__
        text = reply_text(exc) if kind != "input" else describe_error(exc, 160)
        summary = f"{code}: {text}".replace("\n", " ")[:200]
        self.last_reply_error = summary
        if kind == "denied":
            message = refusal_message(exc, self.location)
            self.misconfiguration = message
            if message not in self._denials and len(self._denials) < 64:
                self._denials.add(message)
                log.error("%s", message)
        else:
            now = time.monotonic()
            if now - self._reply_logged.get(code, -_REPLY_LOG_EVERY) >= _REPLY_LOG_EVERY:
                self._reply_logged[code] = now
                log.warning("Redis at %s refused a request (%s); it misses or "
                            "is dropped, Redis stays in use", self.location.describe(),
                            summary)
        return ReplyError(summary, kind)

    def _misconfigured(self, message: str) -> None:
        """Say once (per distinct problem) that Redis refuses us for a reason only a setting
        can fix; stats() shows it until Redis accepts us again."""
        if message != self.misconfiguration:
            self.misconfiguration = message
            log.error("%s; serving from the fallback store until this is fixed",
                      message)

    def offline(self, keys: list[str] | None, pattern: str | None, stamp: int,
                local: Callable[[], R]) -> tuple[R] | None:
        """Journal an invalidation and apply ``local`` (the fallback write) atomically for the
        host: ``(local's result,)``, or None if Redis came back meanwhile (write there).
        ``local`` runs inside the host transaction (flock and BEGIN IMMEDIATE), so a
        read-check-write in it (``add``, ``incr``, ``touch``) is atomic across the host's
        processes on the shared fallback store."""
        if self.location.kind == "memory":  # nothing to replay to
            return (local(),)
        with self._state_lock:
            try:
                return self._offline(keys, pattern, stamp, local)
            except sqlite3.Error as exc:  # a full or broken disk: this process goes on alone
                self.degrade(exc)
                return self._offline(keys, pattern, stamp, local)

    def _offline(self, keys: list[str] | None, pattern: str | None, stamp: int,
                 local: Callable[[], R]) -> tuple[R] | None:
        with self.host.transaction() as db:
            if not self.breaker.is_open:
                return None
            if pattern is not None:
                self.journal.record_pattern(db, pattern, stamp)
            else:
                self.journal.record_keys(db, keys or [], stamp)
            return (local(),)

    def degrade(self, exc: BaseException) -> None:
        """The host files failed (disk full, read-only, damaged): log it once and go on with
        state of this process only (its own breaker, journal and memory store)."""
        with self._state_lock, self._attach_lock:
            if not self.host.shared:
                return
            was_open = self.breaker.is_open
            log.error("the state shared by this host's processes in %s failed "
                      "(%s); this process goes on with per-process state (journal and fallback "
                      "store in memory)", self.host.describe(), exc)
            self.state_problem = f"{self.host.describe()}: {exc}"
            try:
                pending = self.journal.rows()  # reads still work on a full disk
            except sqlite3.Error:  # lost: unlink every key of ours once Redis is back
                pending = [clear_all(STAMPER.next())] if was_open else []
            self.host = HostState(self.location, None)
            self._build_state()
            if was_open:
                self.breaker.failure()
            self.journal.adopt(pending)
            self._closed_gen = -1
            self._seen_gen = self.host.page[GEN]
            self._page = self.host.page
            self._lend_page()
            if self.near is not None:
                self.near.lose()
        self.recovery.ensure_running()

    def fallback_invalidate(self, keys: list[str] | None = None, pattern: str | None = None) -> int:
        """Drop entries from the fallback store; a count of live ones."""
        next(self.counters.memory_writes)
        try:
            if pattern is not None:
                return self.fallback.delete_matching(compile_glob(pattern))
            return self.fallback.delete(keys or [])
        except sqlite3.Error as exc:
            self.degrade(exc)
            return self.fallback_invalidate(keys, pattern)
