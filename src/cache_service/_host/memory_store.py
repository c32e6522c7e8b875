"""Bounded, thread-safe CLOCK (second-chance) + TTL store: the fallback when Redis is
unreachable.

Entries hold encoded payloads (and, for small values, a decoded form the caller only ever
gets a copy of), so nothing a caller holds aliases the store. Each entry remembers the
``epoch`` it was written in; the target bumps the epoch when an outage starts and when it
ends, so copies from an earlier outage are never served.

**Eviction is CLOCK, not strict LRU.** A hit takes no lock: one dict read (atomic under the
GIL), one clock read, the expiry and epoch checks, and it sets the entry's *referenced* flag.
Writes, deletes and eviction take the store's lock. When a write puts the store over its
entry or byte bound, eviction looks at the oldest entry (insertion order): a referenced one
gets a second chance (its flag is cleared and it moves to the newest end), an unreferenced
one is evicted, until both bounds hold again; the entry being written is never the one
evicted. So an entry read since the eviction hand last
passed it survives one more round, as under LRU, but among entries read since then the order
of their reads does not matter. This store used to be strict LRU: a hit took the lock to
move its entry to the end, and under threads that lock, held across a clock read, made
readers convoy behind each other at every GIL switch (4 threads on two CPUs: 0.29x the
throughput of one; see the docs' Benchmarks page). The bounds are exact: a write returns with
both held.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from cache_service.redis_glob import Glob

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
    def delete_matching(self, glob: Glob) -> int: ...
    def matching(self, glob: Glob, limit: int) -> list[str]: ...
    def new_epoch(self) -> None: ...


# An entry: [expires (clock seconds), epoch, payload, value or NO_VALUE, referenced].
_EXPIRES, _EPOCH, _PAYLOAD, _VALUE, _REFERENCED = range(5)


class MemoryStore:
    """CLOCK + TTL over ``key -> payload`` with entry and byte bounds and an injectable clock.

    Reads (``lookup``, ``get``) take no lock; everything that changes the store does.
    """

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
        # Insertion order is the eviction hand's order. Only ``.get`` is used without the lock
        # (move_to_end relinks an entry without removing it, so a reader never misses a live
        # one while eviction or an overwrite moves it).
        self._data: OrderedDict[str, list[Any]] = OrderedDict()
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
        """The live payload for ``key`` of the current epoch, marking it referenced."""
        found = self.lookup(key)
        return None if found is None else found[0]

    def lookup(self, key: str) -> tuple[bytes, Any] | None:
        """``(payload, value)`` of a live entry (``value`` is ``NO_VALUE`` unless kept).

        Lock-free: the entry is read first and the epoch after it, so a read that begins
        after ``new_epoch`` (or a delete) returned never sees an entry it removed.
        """
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[_EXPIRES] > self.clock() and entry[_EPOCH] == self.epoch:
            entry[_REFERENCED] = True
            return entry[_PAYLOAD], entry[_VALUE]
        self._expire(key, entry)
        return None

    def remaining(self, key: str) -> float:
        """Seconds a live entry of the current epoch has left (0.0 if there is none)."""
        entry = self._data.get(key)
        if entry is None or entry[_EPOCH] != self.epoch:
            return 0.0
        expires: float = entry[_EXPIRES]
        return max(0.0, expires - self.clock())

    def set(self, key: str, payload: bytes, ttl: float, value: Any = NO_VALUE) -> None:
        """Store ``payload`` for ``ttl`` seconds, evicting (CLOCK) to keep both bounds.

        ``value``: a decoded form of ``payload`` owned by the store (never one a caller
        holds): an immutable value as it is, or what callers copy (see ``_ops.write.kept``).
        """
        size = len(key) + len(payload) + _ENTRY_OVERHEAD
        data = self._data
        with self._lock:
            now = self.clock()
            old = data.get(key)
            if old is not None:
                self._bytes -= len(key) + len(old[_PAYLOAD]) + _ENTRY_OVERHEAD
            if size > self.max_bytes:
                if old is not None:
                    del data[key]
                return
            # replaced in place, then moved: a concurrent reader sees the old entry or the new
            data[key] = [now + ttl, self.epoch, payload, value, False]
            if old is not None:
                data.move_to_end(key)
            self._bytes += size
            if now >= self._next_sweep:
                self._sweep(now)
            if len(data) > self.max_entries or self._bytes > self.max_bytes:
                self._evict(key)

    def _evict(self, written: str) -> None:
        """Second chance: drop unreferenced entries from the old end until both bounds hold.
        Each referenced entry passed is cleared and moved to the new end, so this ends within
        one turn of the hand over the store. The entry just ``written`` is never the one to go
        (when every other entry was read, the hand comes round to it first)."""
        data = self._data
        while len(data) > self.max_entries or self._bytes > self.max_bytes:
            k = next(iter(data))
            entry = data[k]
            if entry[_REFERENCED] or (k == written and len(data) > 1):
                entry[_REFERENCED] = False
                data.move_to_end(k)
                continue
            del data[k]
            self._bytes -= len(k) + len(entry[_PAYLOAD]) + _ENTRY_OVERHEAD
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
                    removed += entry[_EXPIRES] > now and entry[_EPOCH] == self.epoch
        return removed

    def delete_matching(self, glob: Glob) -> int:
        """Remove every key ``glob`` matches (as Redis would); returns how many live ones."""
        with self._lock:
            doomed = glob.select(self._data)
        return self.delete(doomed)

    def matching(self, glob: Glob, limit: int) -> list[str]:
        """Up to ``limit`` live keys ``glob`` matches (as Redis would) (listing keys)."""
        now = self.clock()
        with self._lock:
            data = self._data
            live = [k for k in glob.select(data)
                    if data[k][_EXPIRES] > now and data[k][_EPOCH] == self.epoch]
        return live[:limit]

    def new_epoch(self) -> None:
        """Forget every entry: an outage started or ended."""
        with self._lock:
            self.epoch += 1
            self._data.clear()
            self._bytes = 0

    def _expire(self, key: str, entry: list[Any]) -> None:
        """Drop an entry a reader found expired (or of an old epoch), unless replaced since."""
        with self._lock:
            if self._data.get(key) is entry:
                self._drop(key, entry)
                self.expirations += 1

    def _drop(self, key: str, entry: list[Any]) -> None:
        del self._data[key]
        self._bytes -= len(key) + len(entry[_PAYLOAD]) + _ENTRY_OVERHEAD

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.sweep_interval
        expired = [k for k, e in self._data.items()
                   if e[_EXPIRES] <= now or e[_EPOCH] != self.epoch]
        for k in expired:
            self._drop(k, self._data[k])
        self.expirations += len(expired)
