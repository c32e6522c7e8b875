"""One target per Redis location per process: clients, breaker, fallback store and journal.

Every service naming the same location shares its target, so an outage seen by one is known
to all and two services with one prefix see the same data whether Redis is up or down.

Operations (``core``, ``_ops``; their protocol is ``_ops.protocol``) are generators that yield
Redis requests (``_ops.requests``: named types that send themselves to a client) and receive
replies; ``Target.run`` drives them with the sync client and
``Target.arun`` with the asyncio one. That is the only place sync and async differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, Callable
from time import perf_counter
from typing import Any, TypeVar

from cache_service._host.breaker import ST_CLOSED, ST_DRAINING, Breaker, Gate
from cache_service._host.journal import Guard, Journal, clear_all
from cache_service._host.memory_store import MemoryStore
from cache_service._host.shared_store import SharedStore
from cache_service._host.state import (
    GEN,
    NEAR_USED,
    PAGE_BYTES,
    STATE,
    HostState,
    host_clock,
    host_state,
    mark_written,
    resolve_dir,
)
from cache_service._near.store import NearCache, NearStore
from cache_service._near.tracker import Tracker
from cache_service._ops import remove
from cache_service._ops.protocol import Op, ReplyError, Request, Unavailable, WrongType
from cache_service._ops.requests import REQUESTS, Call, Ping
from cache_service._redis.backend import (
    CONNECTIVITY_ERRORS,
    OUTAGES,
    build_async_client,
    build_sync_client,
    classify_error,
    describe_error,
    diagnose,
    drop_idle,
    misconfiguration_message,
    ping_primaries,
    refresh_topology,
    refusal_message,
    reply_code,
    reply_text,
)
from cache_service._runtime.recovery import Recovery
from cache_service.codec import STAMPER
from cache_service.config import Location, TargetOptions
from cache_service.forking import renew_locks
from cache_service.redis_glob import compile_glob
from cache_service.stats import Latency, TargetCounters, add

__all__ = ["Target"]

log = logging.getLogger("cache_service")
T = TypeVar("T")
R = TypeVar("R")

class Target:
    """Shared state for one Redis location; drives operations against it."""

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
        self.recovery = Recovery(self)
        self.misconfiguration: str | None = None
        self.last_reply_error: str | None = None  # code and message: never a key
        self._reply_logged: dict[str, float] = {}  # code -> when last logged (monotonic)
        self._denials: set[str] = set()  # refusals named in the log (each once)
        self.near: NearStore | None = None  # made by the first service asking for one
        self.tracker: Tracker | None = None
        self.state_problem: str | None = None
        self._next_diagnosis = 0.0
        self.guard = _NO_GUARD
        self._closed_gen = -1  # the generation this process last saw closed: Redis is usable
        self._seen_gen = -1
        self._page: memoryview = _UNATTACHED
        self._attach_lock = threading.Lock()
        # Held while an outage write journals, and while ``degrade`` swaps the host state, so
        # that no journaled invalidation lands in a journal already left behind.
        self._state_lock = threading.RLock()
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
        if self._page is not _UNATTACHED:
            return
        with self._attach_lock:
            if self._page is not _UNATTACHED:
                return
            location, options = self.location, self.options
            memory_only = location.kind == "memory"
            self.host = host_state(location,
                                   None if memory_only else resolve_dir(options.state_dir))
            self.state_problem = self.host.problem
            self._build_state()
            if memory_only:
                self.breaker.hold_open()
                self.gate = _memory_gate  # type: ignore[method-assign]
            self._seen_gen = self.host.page[GEN]
            if not self.breaker.is_open:
                self.guard = self.journal.guard()
            self._page = self.host.page
            self._lend_page()

    @property
    def attached(self) -> bool:
        """Whether the target was used (its host state, breaker and stores exist)."""
        return self._page is not _UNATTACHED

    def __repr__(self) -> str:
        state = "unattached" if self._page is _UNATTACHED else self.breaker.state
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

    def _lend_page(self) -> None:
        """Give the near cache the host page it checks, and mark the host as having one
        (writers then move key slots): once the page exists and the near cache does."""
        if self.near is not None and self._page is not _UNATTACHED:
            self._page[NEAR_USED] = 1
            self.near.page = self._page

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

    # -- drivers: the only sync/async twins -------------------------------------------------
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

    def sync_client(self) -> Any:
        """The blocking client (built on first use)."""
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                self._client = build_sync_client(self.location, self.options)
            return self._client

    def _async_client(self) -> Any:
        loop = asyncio.get_running_loop()
        last = self._last_aclient  # one tuple, replaced atomically: safe across threads
        if last[0] is loop:
            return last[1]
        client = self._aclients.get(loop)
        if client is None:
            with self._client_lock:
                self._drop_async_clients(lambda old: old.is_closed())
                client = self._aclients.get(loop)
                if client is None:
                    client = self._aclients[loop] = build_async_client(self.location,
                                                                       self.options)
                    closer = self._aclosers[loop] = self._close_at_loop_end(loop, client)
                    with contextlib.suppress(StopIteration):  # to its ``yield``: registered
                        closer.asend(None).send(None)
        self._last_aclient = (loop, client)
        return client

    def _drop_async_clients(self, which: Callable[[asyncio.AbstractEventLoop], bool]) -> None:
        """Forget the clients of the loops ``which`` names (those closed).

        Their closers are finished here, synchronously: left to the collector, each would ask
        its closed loop to run it and fail. The connections cannot be closed without their
        loop; once forgotten, they are garbage and asyncio closes their sockets when it is
        collected.
        """
        for loop in [loop for loop in self._aclients if which(loop)]:
            closer = self._aclosers.get(loop)
            if closer is not None:
                with contextlib.suppress(StopIteration):
                    closer.aclose().send(None)
            self._aclients.pop(loop, None)
            self._aclosers.pop(loop, None)
        last = self._last_aclient[0]
        if last is not None and which(last):
            self._last_aclient = (None, None)

    async def _close_at_loop_end(self, loop: asyncio.AbstractEventLoop,
                                 client: Any) -> AsyncGenerator[None, None]:
        """Suspends until finalized (``aclose()``), then forgets and closes ``loop``'s client
        (only forgets it when the loop is closed or the process is a fork: nothing to await).

        Forgetting matters: the client's streams reference the loop, so holding it would never
        let a finished loop go.
        """
        pid = os.getpid()
        try:
            yield
        finally:
            if self._aclients.get(loop) is client:
                self._aclients.pop(loop, None)
                self._aclosers.pop(loop, None)
            if self._last_aclient[0] is loop:
                self._last_aclient = (None, None)
            if not loop.is_closed() and os.getpid() == pid:
                await client.aclose()

    async def aclose(self) -> None:
        """Close the asyncio client of the running loop (at the latest, ``asyncio.run`` does
        it when the loop shuts down)."""
        closer = self._aclosers.get(asyncio.get_running_loop())
        if closer is not None:
            await closer.aclose()

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

    def close(self) -> None:
        """Close the sync client's connections."""
        if self.tracker is not None:
            self.tracker.stop()
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- decisions shared by every operation --------------------------------------------------
    def gate(self, writing: bool = False) -> Gate:
        """May this call use Redis now? See ``Breaker``: one memory read while it may."""
        if self._page[GEN] == self._closed_gen:
            return Gate.REDIS
        return self._slow_gate(writing)

    def _slow_gate(self, writing: bool) -> Gate:
        page = self._page
        if page is _UNATTACHED:
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

    def guard_blocks(self, key: str, stamp: int) -> bool:
        """Whether a tombstone marks the payload stamped ``stamp`` at ``key`` as a late write."""
        now = host_clock()
        if now >= self.guard.until:
            self.guard = _NO_GUARD
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
                log.error("cache_service: %s", message)
        else:
            now = time.monotonic()
            if now - self._reply_logged.get(code, -_REPLY_LOG_EVERY) >= _REPLY_LOG_EVERY:
                self._reply_logged[code] = now
                log.warning("cache_service: Redis at %s refused a request (%s); it misses or "
                            "is dropped, Redis stays in use", self.location.describe(),
                            summary)
        return ReplyError(summary, kind)

    def _misconfigured(self, message: str) -> None:
        """Say once (per distinct problem) that Redis refuses us for a reason only a setting
        can fix; stats() shows it until Redis accepts us again."""
        if message != self.misconfiguration:
            self.misconfiguration = message
            log.error("cache_service: %s; serving from the fallback store until this is fixed",
                      message)

    def offline(self, keys: list[str] | None, pattern: str | None, stamp: int,
                local: Callable[[], R]) -> tuple[R] | None:
        """Journal an invalidation and apply ``local`` (the fallback write) atomically for the
        host: ``(local's result,)``, or None if Redis came back meanwhile (write there)."""
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
            log.error("cache_service: the state shared by this host's processes in %s failed "
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

    def probe(self) -> bool:
        """Reach Redis, replay the journal, close the breaker (run by ``Recovery``); True when
        the breaker is closed afterwards. After a failure that looked like an outage, ask
        whether it is a TLS mismatch (at most every few seconds: it costs a connect)."""
        if self.run(self._recover()):
            return True
        now = time.monotonic()
        if self.misconfiguration is None and now >= self._next_diagnosis:
            self._next_diagnosis = now + 5.0
            message = diagnose(self.location, self.options)
            if message is not None:
                self._misconfigured(message)
        return False

    def _recover(self) -> Op[bool]:
        replayed = 0
        started = self.breaker.outage_started
        try:
            yield Call(drop_idle)
            yield Call(refresh_topology)  # cluster slots, Sentinel's primary; else nothing
            yield self.ping_request
            if self.misconfiguration is not None:
                log.info("cache_service: Redis at %s accepts us again", self.location.describe())
                self.misconfiguration = None
            self.breaker.draining()
            while True:
                plan = self.journal.plan()
                if not plan:
                    if self.breaker.close_if(lambda: len(self.journal) == 0):
                        break
                    if not self.breaker.is_open:
                        return True
                    if self.breaker.state != Breaker.DRAINING:
                        return False
                    continue
                for work in plan:
                    if work.pattern is None:
                        yield from self.unlink_keys(list(work.keys))
                    else:
                        yield from self.scan_unlink(work.pattern)
                    self.journal.done(work)
                    replayed += len(work.rows)
        except Unavailable:
            return False
        dropped = len(self.fallback)
        if isinstance(self.fallback, SharedStore):
            self.fallback.purge()
        self._observe(self._page[GEN])
        self.journal.expire_tombstones()
        next(self.counters.replays)
        add(self.counters.entries_dropped, dropped)
        log.info(
            "Redis at %s is back%s; replayed %d invalidation(s), dropped %d fallback entr%s",
            self.location.describe(),
            f" after {time.time() - started:.1f}s" if started else "", replayed, dropped,
            "y" if dropped == 1 else "ies",
        )
        return True

    # -- key removal (the operations are in ``_ops.remove``) ---------------------------------
    def scan_unlink(self, pattern: str) -> Op[int]:
        """SCAN for ``pattern`` and unlink the matches that hold our payloads; a count."""
        return remove.scan_unlink(self.location.kind == "cluster", pattern)

    def unlink_owned(self, keys: list[bytes]) -> Op[int]:
        """Unlink those of ``keys`` that hold our payloads; a count."""
        return remove.unlink_owned(self.location.kind == "cluster", keys)

    def unlink_keys(self, keys: list[str]) -> Op[int]:
        """UNLINK ``keys``; a count."""
        return remove.unlink_keys(self.location.kind == "cluster", keys)

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


def _memory_gate(writing: bool = False) -> Gate:
    """The gate of a ``memory://`` target: always the memory store."""
    return Gate.MEMORY


_NO_GUARD = Guard()
_REPLY_LOG_EVERY = 60.0  # seconds between warnings about one error-reply code
_UNKNOWN: Any = object()
# Generator names that are not the public call's name (None: not a call, e.g. the probe).
_OPERATION_NAMES: dict[str, str | None] = {
    "_recover": None, "unlink_owned": None, "scan_unlink": None, "unlink_keys": None,
    "discard": "get", "check_tagged": "get", "is_available": "is_redis_available",
    "put": "set", "put_encoded": "set",
}
# The page of a target not yet attached: its generation never matches, so the first call
# takes the slow path, which attaches.
_UNATTACHED = memoryview(bytearray(PAGE_BYTES)).cast("q")
_UNATTACHED[GEN] = -2


_INHERITED: list[Any] = []  # in a forked child: the parent's per-loop clients, never used
