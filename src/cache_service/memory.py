"""Bounded, thread-safe LRU store with per-entry TTL: the fallback when Redis is unreachable.

Entries hold encoded payloads (never live objects), so nothing a caller holds aliases the
store. Each entry remembers the ``epoch`` it was written in; the target bumps the epoch when
an outage starts and when it ends, so copies from an earlier outage are never served.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from re import Pattern
from typing import Any, Protocol

__all__ = ["NO_VALUE", "FallbackStore", "MemoryStore"]

_ENTRY_OVERHEAD = 96  # rough per-entry bytes beyond key and payload, for the byte bound
NO_VALUE: Any = object()  # an entry that keeps only its payload


class FallbackStore(Protocol):
    """What operations use of a fallback store: this module's ``MemoryStore`` (per process)
    or ``fallback.SharedStore`` (shared by a host's processes)."""

    def __len__(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    def lookup(self, key: str) -> tuple[bytes, Any] | None: ...
    def get(self, key: str) -> bytes | None: ...
    def remaining(self, key: str) -> float: ...
    def set(self, key: str, payload: bytes, ttl: float, value: Any = NO_VALUE) -> None: ...
    def delete(self, keys: Iterable[str]) -> int: ...
    def delete_matching(self, pattern: Pattern[str]) -> int: ...
    def new_epoch(self) -> None: ...


class MemoryStore:
    """LRU + TTL over ``key -> payload`` with entry and byte bounds and an injectable clock."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float = 1.0,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.sweep_interval = sweep_interval
        self.epoch = 0
        self.evictions = 0
        self.expirations = 0
        self._data: OrderedDict[str, tuple[float, int, bytes, Any]] = OrderedDict()
        self._bytes = 0
        self._next_sweep = clock() + sweep_interval
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        """Approximate bytes held (keys, payloads and per-entry overhead)."""
        return self._bytes

    def get(self, key: str) -> bytes | None:
        """The live payload for ``key`` of the current epoch, refreshing its LRU position."""
        found = self.lookup(key)
        return None if found is None else found[0]

    def lookup(self, key: str) -> tuple[bytes, Any] | None:
        """``(payload, value)`` of a live entry (``value`` is ``NO_VALUE`` unless kept)."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry[0] <= self.clock() or entry[1] != self.epoch:
                self._drop(key, entry)
                self.expirations += 1
                return None
            self._data.move_to_end(key)
            return entry[2], entry[3]

    def remaining(self, key: str) -> float:
        """Seconds a live entry of the current epoch has left (0.0 if there is none)."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry[1] != self.epoch:
                return 0.0
            return max(0.0, entry[0] - self.clock())

    def set(self, key: str, payload: bytes, ttl: float, value: Any = NO_VALUE) -> None:
        """Store ``payload`` for ``ttl`` seconds, evicting least recently used entries.

        ``value``: the decoded value, for immutable values only (returning it aliases nothing).
        """
        size = len(key) + len(payload) + _ENTRY_OVERHEAD
        with self._lock:
            now = self.clock()
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(key) + len(old[2]) + _ENTRY_OVERHEAD
            if size > self.max_bytes:
                return
            self._data[key] = (now + ttl, self.epoch, payload, value)
            self._bytes += size
            if now >= self._next_sweep:
                self._sweep(now)
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                k, entry = self._data.popitem(last=False)
                self._bytes -= len(k) + len(entry[2]) + _ENTRY_OVERHEAD
                self.evictions += 1

    def delete(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; returns how many live entries were removed."""
        removed = 0
        with self._lock:
            now = self.clock()
            for key in keys:
                entry = self._data.get(key)
                if entry is not None:
                    self._drop(key, entry)
                    removed += entry[0] > now and entry[1] == self.epoch
        return removed

    def delete_matching(self, pattern: Pattern[str]) -> int:
        """Remove every key the compiled glob matches; returns how many live ones."""
        with self._lock:
            doomed = [k for k in self._data if pattern.fullmatch(k)]
        return self.delete(doomed)

    def new_epoch(self) -> None:
        """Forget every entry: an outage started or ended."""
        with self._lock:
            self.epoch += 1
            self._data.clear()
            self._bytes = 0

    def _drop(self, key: str, entry: tuple[float, int, bytes, Any]) -> None:
        del self._data[key]
        self._bytes -= len(key) + len(entry[2]) + _ENTRY_OVERHEAD

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.sweep_interval
        expired = [k for k, e in self._data.items() if e[0] <= now or e[1] != self.epoch]
        for k in expired:
            self._drop(k, self._data[k])
        self.expirations += len(expired)
