"""One target per Redis location per process: clients, breaker, memory store and journal.

Every service naming the same location shares its target, so an outage seen by one is known
to all and two services with one prefix see the same data whether Redis is up or down.

Operations (see ``core``) are generators that yield Redis requests ``(method, *args)`` and
receive replies (``method`` is a client method name, or a function called with the client);
``Target.run`` drives them with the sync client and ``Target.arun`` with the
asyncio one. That is the only place sync and async differ.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator
from functools import partial
from typing import Any, TypeVar

from .breaker import Breaker, Gate
from .codec import MAGIC
from .config import Location, TargetOptions
from .journal import Journal
from .keys import glob_to_regex
from .memory import MemoryStore
from .redis_backend import (
    CONNECTIVITY_ERRORS,
    build_async_client,
    build_sync_client,
    drop_idle_connections,
    is_wrong_type,
)
from .stats import TargetCounters

__all__ = ["Op", "Target", "Unavailable", "WrongType", "get_target"]

log = logging.getLogger("cache_service")
T = TypeVar("T")
Request = tuple[Any, ...]
Op = Generator[Request, Any, T]

# Unlinks the given keys that hold a string starting with our header: never a foreign key.
UNLINK_OWNED = """
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k)['ok'] == 'string' and redis.call('GETRANGE', k, 0, 1) == ARGV[1] then
    n = n + redis.call('UNLINK', k)
  end
end
return n
"""
SCAN_COUNT = 1000


class Unavailable(Exception):
    """Redis could not serve this request; the operation falls back to memory."""


class WrongType(Exception):
    """The key holds a non-string Redis value: foreign data, a miss."""


def advance(op: Op[T], reply: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Resume ``op`` with a reply or an error: ``(True, request)`` or ``(False, result)``."""
    try:
        return True, (op.send(reply) if error is None else op.throw(error))
    except StopIteration as done:
        return False, done.value


class Target:
    """Shared state for one Redis location; drives operations against it."""

    def __init__(self, location: Location, options: TargetOptions,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.location = location
        self.options = options
        self.clock = clock
        self.breaker = Breaker(options.breaker_min_backoff, options.breaker_max_backoff)
        self.memory = MemoryStore(options.max_memory_entries, options.max_memory_bytes, clock)
        self.journal = Journal(options.journal_max_entries, options.late_write_guard)
        self.counters = TargetCounters()
        self.outage_started: float | None = None
        self._client: Any = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._client_lock = threading.Lock()
        if location.kind == "memory":
            self.breaker.hold_open()

    def __repr__(self) -> str:
        return f"<Target {self.location.describe()} {self.breaker.state}>"

    # -- drivers: the only sync/async twins -------------------------------------------------
    def run(self, op: Op[T]) -> T:
        """Drive ``op`` to completion with the sync client."""
        reply: Any = None
        error: BaseException | None = None
        try:
            while (step := advance(op, reply, error))[0]:
                reply, error = self._call(step[1])
        finally:
            op.close()
        result: T = step[1]
        return result

    async def arun(self, op: Op[T]) -> T:
        """Drive ``op`` to completion with the asyncio client of the running loop."""
        reply: Any = None
        error: BaseException | None = None
        try:
            while (step := advance(op, reply, error))[0]:
                reply, error = await self._acall(step[1])
        finally:
            op.close()
        result: T = step[1]
        return result

    def _call(self, request: Request) -> tuple[Any, BaseException | None]:
        try:
            client = self._client if self._client is not None else self._sync_client()
            name = request[0]
            method = getattr(client, name) if type(name) is str else partial(name, client)
            return method(*request[1:]), None
        except CONNECTIVITY_ERRORS as exc:
            return None, self.failed(exc)

    async def _acall(self, request: Request) -> tuple[Any, BaseException | None]:
        try:
            client = self._async_client()
            name = request[0]
            method = getattr(client, name) if type(name) is str else partial(name, client)
            return await method(*request[1:]), None
        except CONNECTIVITY_ERRORS as exc:
            return None, self.failed(exc)

    def _sync_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = build_sync_client(self.location, self.options)
            return self._client

    def _async_client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._aclients[loop] = build_async_client(self.location, self.options)
        return client

    async def aclose(self) -> None:
        """Close the asyncio client of the running loop (call before the loop ends)."""
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        """Close the sync client's connections."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- decisions shared by every operation --------------------------------------------------
    def gate(self, writing: bool = False) -> Gate:
        """May this call use Redis now? See ``Breaker.gate``."""
        return self.breaker.gate(self.clock(), writing)

    def failed(self, exc: BaseException) -> BaseException:
        """Account a failed request; returns what to throw into the operation."""
        if is_wrong_type(exc):
            return WrongType(str(exc))
        self.counters.errors += 1
        now = self.clock()
        if self.breaker.failure(now):
            self.outage_started = now
            self.memory.new_epoch()
            log.warning(
                "Redis at %s unreachable (%s: %s); serving from the in-memory store, "
                "next try in %.1fs", self.location.describe(), type(exc).__name__, exc,
                self.breaker.backoff,
            )
        else:
            log.debug("Redis at %s still unreachable: %s", self.location.describe(), exc)
        return Unavailable(str(exc))

    def record_offline(self, keys: list[str] | None = None, pattern: str | None = None,
                       stamp: int = 0) -> bool:
        """Journal an invalidation made on memory; False if Redis came back meanwhile."""
        with self.breaker.lock:
            if not self.breaker.is_open:
                return False
            if pattern is not None:
                self.journal.record_pattern(pattern, stamp)
            else:
                self.journal.record_keys(keys or [], stamp)
            return True

    def recover(self) -> Op[Gate]:
        """The probe: reach Redis, replay the journal, then close the breaker."""
        replayed = 0
        finished = False
        try:
            yield (drop_idle_connections,)
            yield ("ping",)
            self.breaker.draining()
            while True:
                plan = self.journal.plan()
                if not plan:
                    if self.breaker.close_if(lambda: len(self.journal) == 0):
                        break
                    if self.breaker.state in (Breaker.OPEN, Breaker.CLOSED):
                        finished = True
                        return Gate.MEMORY if self.breaker.is_open else Gate.REDIS
                    continue
                for work in plan:
                    stamps = self.journal.stamps(work)
                    if not stamps:
                        continue
                    if work.pattern is None:
                        yield ("unlink", *stamps)
                    else:
                        yield from self.scan_unlink(work.pattern)
                    self.journal.done(work, stamps, self.clock())
                    replayed += len(stamps)
            finished = True
        except Unavailable:
            finished = True
            return Gate.MEMORY
        finally:
            if not finished:
                self.breaker.abandon(self.clock())
        dropped = len(self.memory)
        self.memory.new_epoch()
        self.counters.replays += 1
        self.counters.entries_dropped += dropped
        down = self.clock() - self.outage_started if self.outage_started is not None else 0.0
        self.outage_started = None
        log.info(
            "Redis at %s is back after %.1fs; replayed %d invalidation(s), dropped %d "
            "in-memory entr%s", self.location.describe(), down, replayed, dropped,
            "y" if dropped == 1 else "ies",
        )
        return Gate.REDIS

    def scan_unlink(self, pattern: str) -> Op[int]:
        """SCAN for ``pattern`` and unlink the matches that hold our payloads; a count."""
        removed = 0
        cursor = 0
        while True:
            cursor, keys = yield ("scan", cursor, pattern, SCAN_COUNT)
            if keys:
                removed += yield ("eval", UNLINK_OWNED, len(keys), *keys, MAGIC)
            if not cursor:
                return removed

    def memory_invalidate(self, keys: list[str] | None = None, pattern: str | None = None) -> int:
        """Drop entries from the memory store; a count of live ones."""
        self.counters.memory_writes += 1
        if pattern is not None:
            return self.memory.delete_matching(glob_to_regex(pattern))
        return self.memory.delete(keys or [])

    def snapshot(self) -> dict[str, Any]:
        """Breaker, journal, memory-store and counter figures for ``stats()``."""
        return {
            "location": self.location.describe(),
            "backend": "memory" if self.breaker.is_open else "redis",
            "breaker_state": self.breaker.state,
            "breaker_opened": self.breaker.opened,
            "breaker_closed": self.breaker.closed,
            "journal_size": len(self.journal),
            "journal_overflows": self.journal.overflows,
            "memory_entries": len(self.memory),
            "memory_bytes": self.memory.nbytes,
            "memory_evictions": self.memory.evictions,
            **self.counters.snapshot(),
        }


_targets: dict[tuple[Location, Callable[[], float]], Target] = {}
_targets_lock = threading.Lock()


def get_target(location: Location, options: TargetOptions,
               clock: Callable[[], float] = time.monotonic) -> Target:
    """The process-wide target for ``location`` (created by the first service naming it)."""
    key = (location, clock)
    target = _targets.get(key)
    if target is None:
        with _targets_lock:
            target = _targets.get(key)
            if target is None:
                target = _targets[key] = Target(location, options, clock)
    if target.options != options:
        log.debug("target %s keeps the options of the first service that named it",
                  location.describe())
    return target
