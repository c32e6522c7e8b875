"""Load and measurements for the Sentinel and Cluster failover tests (not fixtures).

``FailoverRun`` keeps several threads doing get/set/delete/invalidate_pattern on their own keys
while a test kills a primary, watches a few "victim" keys that were replicated before the kill
and invalidated during the outage, and measures what the Sentinel guide reports: how long until the
service noticed, how long until it was back on Redis, and how many calls memory served.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cache_service import AsyncCacheService, CacheService

T = TypeVar("T")
OLD = "old value, replicated before the kill"


@dataclass
class Figures:
    """What one failover looked like from the service's side."""

    detected_after: float = float("nan")  # primary killed -> breaker open
    back_after: float = float("nan")  # primary killed -> breaker closed (on Redis again)
    memory_reads: int = 0  # reads served by the memory store meanwhile
    memory_writes: int = 0  # writes and invalidations applied to memory meanwhile
    calls: int = 0  # calls the load threads made meanwhile
    slowest_call: float = 0.0  # the slowest single call of the whole run
    errors: list[BaseException] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    def check(self, label: str, record_property: Callable[[str, object], None]) -> None:
        """Log and record the figures (``pytest -o log_cli=true`` shows them), then assert:
        no exception reached a caller, nothing stale was served, memory did serve."""
        logging.getLogger("tests.failover").warning("%s failover: %s", label, self.summary())
        record_property(f"{label}_failover", self.summary())
        assert self.errors == [], self.errors
        assert self.stale == []
        assert self.memory_reads > 0

    def summary(self) -> str:
        """One line for the test log and the docs."""
        return (f"detected after {self.detected_after:.2f}s, back on Redis after "
                f"{self.back_after:.2f}s, {self.memory_reads} reads and {self.memory_writes} "
                f"writes served by memory meanwhile ({self.calls} calls), slowest call "
                f"{self.slowest_call * 1000:.0f} ms, {len(self.errors)} exceptions")


class FailoverRun:
    """Load threads plus a watcher of victim keys on one service."""

    def __init__(self, svc: CacheService, victims: list[str], threads: int = 4) -> None:
        self.svc = svc
        self.victims = victims
        self.figures = Figures()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._calls = 0
        self._invalidated: set[str] = set()  # victims invalidated during the outage
        self._expected: list[dict[str, Any]] = [{} for _ in range(threads)]
        self._threads = [threading.Thread(target=self._work, args=(n,), daemon=True)
                         for n in range(threads)]
        self._threads.append(threading.Thread(target=self._watch, daemon=True))
        self._stats_before: dict[str, Any] = {}
        self._killed_at = 0.0

    def target(self) -> dict[str, Any]:
        """The target part of ``stats()``."""
        stats: dict[str, Any] = self.svc.stats()["target"]
        return stats

    def prepare(self, replicate: Callable[[], None]) -> None:
        """Write the victims with ``OLD`` and wait until the replicas have them."""
        for key in self.victims:
            self.svc.set(key, OLD, ttl=600)
        replicate()
        assert all(self.svc.get(key) == OLD for key in self.victims)

    def start(self) -> None:
        """Start the load; give it a moment on Redis first."""
        for thread in self._threads:
            thread.start()
        time.sleep(0.2)

    def kill(self, kill: Callable[[], T]) -> T:
        """Kill the primary with ``kill()`` (its result is returned) and start the clock."""
        self._stats_before = self.target()
        with self._lock:
            self._calls = 0
        self._killed_at = time.monotonic()
        return kill()

    def invalidate_victims_during_outage(self, timeout: float = 10.0) -> None:
        """Once the breaker is open, delete half the victims and overwrite the rest."""
        deadline = time.monotonic() + timeout
        while self.target()["breaker_opened"] == self._stats_before["breaker_opened"]:
            assert time.monotonic() < deadline, "the breaker never opened"
            time.sleep(0.005)
        self.figures.detected_after = time.monotonic() - self._killed_at
        for i, key in enumerate(self.victims):
            if i % 2:
                self.svc.set(key, "new value, written during the outage")
            else:
                self.svc.delete(key)
            with self._lock:
                self._invalidated.add(key)
        assert self.target()["breaker_state"] != "closed", "the outage ended too soon to test"

    def wait_back_on_redis(self, timeout: float = 40.0) -> None:
        """Wait until the service closed its breaker by itself; record the figures."""
        deadline = time.monotonic() + timeout
        while self.target()["breaker_state"] != "closed":
            assert time.monotonic() < deadline, f"not back on Redis: {self.target()}"
            time.sleep(0.005)
        self.figures.back_after = time.monotonic() - self._killed_at
        after = self.target()
        self.figures.memory_reads = after["memory_reads"] - self._stats_before["memory_reads"]
        self.figures.memory_writes = after["memory_writes"] - self._stats_before["memory_writes"]
        with self._lock:
            self.figures.calls = self._calls

    def finish(self, linger: float = 0.3) -> Figures:
        """Keep the load on Redis a little longer, stop it and check every key it wrote."""
        time.sleep(linger)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), "a load thread is stuck"
        for expected in self._expected:
            for key, value in expected.items():
                got = self.svc.get(key)
                if got is not None and got != value:
                    self.figures.stale.append(f"{key}: {got!r} instead of {value!r}")
        for key in self.victims:
            if self.svc.get(key) == OLD:
                self.figures.stale.append(f"{key}: the value invalidated during the outage")
        return self.figures

    def _record(self, seconds: float) -> None:
        with self._lock:
            self._calls += 1
            self.figures.slowest_call = max(self.figures.slowest_call, seconds)

    def _work(self, n: int) -> None:
        expected = self._expected[n]
        svc = self.svc
        for i in itertools.count():
            if self._stop.is_set():
                return
            key = f"load:{n}:{i % 23}"
            started = time.perf_counter()
            try:
                if i % 7 == 3:
                    svc.delete(key, f"load:{n}:{(i + 1) % 23}")
                    expected[key] = expected[f"load:{n}:{(i + 1) % 23}"] = None
                elif i % 97 == 5:
                    svc.invalidate_pattern(f"load:{n}:1*")
                    for k in expected:
                        if k.startswith(f"load:{n}:1"):
                            expected[k] = None
                else:
                    value = f"{n}-{i}"
                    svc.set(key, value)
                    expected[key] = value
                    got = svc.get(key)
                    if got is not None and got != value:
                        self.figures.stale.append(f"{key}: read {got!r} right after {value!r}")
            except Exception as exc:  # pragma: no cover - counted and asserted on
                self.figures.errors.append(exc)
            self._record(time.perf_counter() - started)

    def _watch(self) -> None:
        """Read the victims all along: once invalidated, OLD must never come back."""
        while not self._stop.is_set():
            with self._lock:
                invalidated = list(self._invalidated)
            for key in invalidated:
                try:
                    if self.svc.get(key) == OLD:
                        self.figures.stale.append(f"{key}: OLD served after its invalidation")
                except Exception as exc:  # pragma: no cover - counted and asserted on
                    self.figures.errors.append(exc)
            time.sleep(0.001)


async def async_failover(svc: AsyncCacheService, victims: list[str], *,
                         replicate: Callable[[], None], kill: Callable[[], Any],
                         tasks: int = 4, timeout: float = 40.0) -> Figures:
    """The same failover through AsyncCacheService: concurrent tasks on one loop."""
    figures = Figures()
    for key in victims:
        await svc.set(key, OLD, ttl=600)
    replicate()
    stop = asyncio.Event()

    async def load(n: int) -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            key = f"load:{n}:{i % 11}"
            started = time.perf_counter()
            try:
                await svc.set(key, i)
                got = await svc.get(key)
                if got not in (None, i):
                    figures.stale.append(f"{key}: read {got!r} right after {i!r}")
                if i % 5 == 0:
                    await svc.delete(key)
            except Exception as exc:  # pragma: no cover - counted and asserted on
                figures.errors.append(exc)
            figures.calls += 1
            figures.slowest_call = max(figures.slowest_call, time.perf_counter() - started)
            await asyncio.sleep(0)  # memory answers without I/O: let the other tasks run

    async def target() -> dict[str, Any]:
        stats: dict[str, Any] = (await svc.stats())["target"]
        return stats

    async def until(check: Callable[[dict[str, Any]], bool], what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check(await target()):
            assert time.monotonic() < deadline, f"{what}: {await target()}"
            await asyncio.sleep(0.005)

    running = [asyncio.create_task(load(n)) for n in range(tasks)]
    await asyncio.sleep(0.2)
    before = await target()
    killed_at = time.monotonic()
    kill()
    await until(lambda t: t["breaker_opened"] > before["breaker_opened"], "never opened")
    figures.detected_after = time.monotonic() - killed_at
    for key in victims:
        await svc.delete(key)
    await until(lambda t: t["breaker_state"] == "closed", "not back on Redis")
    figures.back_after = time.monotonic() - killed_at
    after = await target()
    figures.memory_reads = after["memory_reads"] - before["memory_reads"]
    figures.memory_writes = after["memory_writes"] - before["memory_writes"]
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*running)
    for key in victims:
        if await svc.get(key) == OLD:
            figures.stale.append(f"{key}: the value deleted during the outage")
    return figures
