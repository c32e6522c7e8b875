"""The host-shared fallback store: what a host's processes serve while Redis is out.

A table in the location's host database (``host.HostState``, SQLite in WAL mode), so a write or
invalidation by one worker is seen by the others at once. Same interface as the per-process
``memory.MemoryStore``; the differences:

- each row carries the outage generation it was written in, and only rows of the current
  generation are served: copies from an outage are never served after it, nor in a later one,
  whatever restarted in between (the recoverer also deletes them);
- bounded by entries and payload bytes; past a bound the oldest-written rows go first (reads
  never write, so there is no LRU order to keep);
- expiry uses the host's clock (``host.host_clock``: the same in every process of the host,
  never stepped back or forward like the wall clock);
- a read-check-write (``add``, ``incr``) is atomic across the host's processes when run in a
  ``host.transaction()``, as every outage write is (``Outages.offline``): reads in it see
  every other process' committed writes, and none can commit until it ends.

Reads cost a SQLite read transaction (~10 µs here, mostly WAL locking), so each process keeps
the rows it read until the row's key slot on the state page moves (a write of that key, or of
one sharing its slot) or the page's write counter does (a write of many keys): a read that
starts after a write returned always sees it, and otherwise a read is a dict lookup.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cache_service._host.memory_store import NO_VALUE
from cache_service._host.state import (
    FB_BYTES,
    FB_ENTRIES,
    FB_EVICTIONS,
    GEN,
    WRITES,
    HostState,
    host_clock,
    key_slot,
)
from cache_service.redis_glob import Glob

__all__ = ["SharedStore"]

_ENTRY_OVERHEAD = 96  # as in memory_store.py: rough per-row bytes beyond key and payload
# A row's bytes as SQL counts them: the key as a BLOB (the length of TEXT stops at a NUL).
_ROW_BYTES = "length(CAST(key AS BLOB)) + length(payload)"


class SharedStore:
    """Key -> payload with TTLs, shared by the processes of a host (see module docstring)."""

    shared = True

    def __init__(self, host: HostState, max_entries: int, max_bytes: int,
                 clock: Callable[[], float] = host_clock, sweep_interval: float = 1.0) -> None:
        self.host = host
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.sweep_interval = sweep_interval
        self._next_sweep = 0.0
        self._page = host.page
        # rows read while WRITES == _version, each with its key slot's value then
        self._rows: dict[str, tuple[tuple[bytes, float, int], int]] = {}
        self._version = -1
        self._rows_lock = threading.Lock()

    def __len__(self) -> int:
        return max(0, self._page[FB_ENTRIES])

    @property
    def nbytes(self) -> int:
        """Approximate bytes held (keys, payloads and per-row overhead)."""
        return max(0, self._page[FB_BYTES])

    @property
    def evictions(self) -> int:
        """Rows removed to stay within the bounds."""
        return self._page[FB_EVICTIONS]

    def lookup(self, key: str) -> tuple[bytes, Any] | None:
        """``(payload, NO_VALUE)`` of a live row of this outage, or None (also when the
        database cannot be read: a miss is always safe)."""
        page = self._page
        version = page[WRITES]
        slot = key_slot(key)
        mark = page[slot]
        kept = self._rows.get(key) if version == self._version else None
        if kept is not None and kept[1] == mark:
            row = kept[0]
        else:
            try:
                with self.host.read() as db:
                    row = db.execute("SELECT payload, expires, gen FROM fallback WHERE key = ?",
                                     (key,)).fetchone()
            except sqlite3.Error:
                return None
            if row is None:
                return None
            self._keep(key, row, version, slot, mark)
        if row[2] != page[GEN] or row[1] <= self.clock():
            return None
        return row[0], NO_VALUE

    def _keep(self, key: str, row: tuple[bytes, float, int], version: int, slot: int,
              mark: int) -> None:
        """Remember ``row``, read while the write counter was ``version`` and its key slot
        ``mark``, if both still are (else it may be older than a write that returned)."""
        page = self._page
        with self._rows_lock:
            if self._version != version:
                if page[WRITES] != version:
                    return
                self._rows.clear()
                self._version = version
            if len(self._rows) >= self.max_entries:
                self._rows.clear()
            if page[WRITES] == version and page[slot] == mark:
                self._rows[key] = (row, mark)

    def remaining(self, key: str) -> float:
        """Seconds a live row of this outage has left (0.0 if there is none)."""
        page = self._page
        try:
            with self.host.read() as db:
                row = db.execute("SELECT expires, gen FROM fallback WHERE key = ?",
                                 (key,)).fetchone()
        except sqlite3.Error:
            return 0.0
        if row is None or row[1] != page[GEN]:
            return 0.0
        return max(0.0, float(row[0]) - self.clock())

    def get(self, key: str) -> bytes | None:
        """The live payload for ``key``, or None."""
        found = self.lookup(key)
        return None if found is None else found[0]

    def set(self, key: str, payload: bytes, ttl: float, value: Any = NO_VALUE) -> None:
        """Store ``payload`` for ``ttl`` seconds, evicting the oldest rows past the bounds."""
        size = len(key.encode()) + len(payload) + _ENTRY_OVERHEAD  # bytes, as SQL counts them
        page = self._page
        with self.host.transaction() as db:
            self.host.touch(key)
            if size > self.max_bytes:
                self._forget(db, "key = ?", (key,))
                return
            old = db.execute(f"SELECT {_ROW_BYTES} FROM fallback WHERE key = ?",
                             (key,)).fetchone()
            now = self.clock()
            db.execute("INSERT OR REPLACE INTO fallback(key, payload, expires, gen) "
                       "VALUES (?, ?, ?, ?)", (key, payload, now + ttl, page[GEN]))
            if old is None:
                page[FB_ENTRIES] += 1
                page[FB_BYTES] += size
            else:
                page[FB_BYTES] += size - old[0] - _ENTRY_OVERHEAD
            if now >= self._next_sweep:
                self._next_sweep = now + self.sweep_interval
                self._forget(db, "expires <= ? OR gen != ?", (now, page[GEN]), touch=False)
                self._recount(db)
            if page[FB_ENTRIES] > self.max_entries or page[FB_BYTES] > self.max_bytes:
                self._evict(db)

    def _recount(self, db: sqlite3.Connection) -> None:
        """Set the page's totals from the table (they drift only if a process died mid-write)."""
        count, size = db.execute(f"SELECT count(*), coalesce(sum({_ROW_BYTES}), "
                                 "0) FROM fallback").fetchone()
        self._page[FB_ENTRIES] = count
        self._page[FB_BYTES] = size + count * _ENTRY_OVERHEAD

    def _evict(self, db: sqlite3.Connection) -> None:
        page = self._page
        while page[FB_ENTRIES] > self.max_entries or page[FB_BYTES] > self.max_bytes:
            oldest = db.execute(f"SELECT rowid, key, {_ROW_BYTES} FROM "
                                "fallback ORDER BY rowid LIMIT 64").fetchall()
            if not oldest:
                self._recount(db)
                return
            for rowid, evicted, size in oldest:
                if page[FB_ENTRIES] <= self.max_entries and page[FB_BYTES] <= self.max_bytes:
                    return
                db.execute("DELETE FROM fallback WHERE rowid = ?", (rowid,))
                self.host.touch(evicted)
                page[FB_ENTRIES] -= 1
                page[FB_BYTES] -= size + _ENTRY_OVERHEAD
                page[FB_EVICTIONS] += 1

    def _forget(self, db: sqlite3.Connection, where: str, args: tuple[Any, ...],
                touch: bool = True) -> int:
        """Delete rows matching ``where``; keeps the totals; returns how many were live.
        ``touch=False``: only rows no reader may serve anyway (expired, another outage)."""
        now = self.clock()
        live, count, size = db.execute(
            "SELECT coalesce(sum(expires > ? AND gen = ?), 0), count(*), "
            f"coalesce(sum({_ROW_BYTES}), 0) FROM fallback WHERE {where}",
            (now, self._page[GEN], *args)).fetchone()
        if count:
            if touch:
                self.host.touch(args[0] if where == "key = ?" else None)
            db.execute(f"DELETE FROM fallback WHERE {where}", args)
            self._page[FB_ENTRIES] -= count
            self._page[FB_BYTES] -= size + count * _ENTRY_OVERHEAD
        return int(live)

    def delete(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; returns how many live rows were removed."""
        removed = 0
        with self.host.transaction() as db:
            for key in keys:
                removed += self._forget(db, "key = ?", (key,))
        return removed

    def delete_matching(self, glob: Glob) -> int:
        """Remove every key ``glob`` matches (as Redis would); returns how many live ones."""
        with self.host.transaction() as db:
            return self._forget(db, "redis_match(?, key)", (glob.pattern,))

    def matching(self, glob: Glob, limit: int) -> list[str]:
        """Up to ``limit`` live keys ``glob`` matches (as Redis would) (listing keys); none
        when the database cannot be read."""
        try:
            with self.host.read() as db:
                rows = db.execute(
                    "SELECT key FROM fallback WHERE redis_match(?, key) AND expires > ? "
                    "AND gen = ? LIMIT ?",
                    (glob.pattern, self.clock(), self._page[GEN], limit)).fetchall()
        except sqlite3.Error:
            return []
        return [key for (key,) in rows]

    def new_epoch(self) -> None:
        """Nothing to do per process: rows of another generation are never served."""

    def purge(self) -> int:
        """Delete every row (after recovery: none of them may be served again); a count."""
        with self.host.transaction() as db:
            return self._forget(db, "1", ())

