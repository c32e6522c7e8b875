"""Outage journal: invalidations made while Redis was unreachable, replayed on recovery.

While the breaker is open, every delete, overwrite (``set``), ``invalidate_pattern`` and
``clear_all`` is recorded with its stamp (see ``codec.Stamper``) in the location's host
database (``host.HostState``): durable, and shared by the processes of the host, so an
invalidation outlives the process that made it and any process may replay it. Entries leave
only once Redis confirmed them, so a replay cut short resumes later and loses nothing.

Rows are kept per (kind, name, writer): deduplicated per key and process, a pattern absorbs
the keys it matches. Bounded: past ``max_entries`` rows the journal folds into whole-prefix
clears, and past that into one clear of every key this library owns.

After replay, what was replayed stays for ``guard_seconds`` (on ``host.host_clock``, shared
by the host's processes) as tombstones (``Guard``): a write
that timed out before the outage and reaches Redis late carries an older stamp of the same
writer than the tombstone, so a read treats it as a miss instead of serving it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from cache_service._host.state import HostState, host_clock
from cache_service.keys import NAMESPACE
from cache_service.redis_glob import Glob, compile_glob, escape_glob

__all__ = ["ALL_OURS", "Guard", "Journal", "Work", "clear_all", "fold"]

ALL_OURS = NAMESPACE + "*"
KEY, PATTERN = 0, 1
WRITER_SHIFT = 40
SEQ_MASK = (1 << WRITER_SHIFT) - 1
Row = tuple[int, str, int, int]  # kind, name, writer, sequence (the stamp's two halves)


@dataclass(frozen=True)
class Work:
    """One replay step: UNLINK ``keys``, or SCAN+UNLINK what ``pattern`` matches."""

    keys: tuple[str, ...] = ()
    pattern: str | None = None
    rows: tuple[Row, ...] = field(default=(), compare=False)


def clear_all(stamp: int) -> Row:
    """The row that stands for a journal that cannot be read: every key of ours, to unlink."""
    return (PATTERN, ALL_OURS, stamp >> WRITER_SHIFT, stamp & SEQ_MASK)


def head_of(full_key_or_pattern: str) -> str:
    """``cs:{prefix}::`` of a namespaced key or pattern."""
    end = full_key_or_pattern.find("::", len(NAMESPACE))
    return full_key_or_pattern[: end + 2] if end >= 0 else NAMESPACE


def fold(rows: list[Row], max_entries: int) -> list[Row]:
    """Bound ``rows``: whole-prefix clears per writer, or past that every key of ours."""
    heads: dict[tuple[str, int], int] = {}
    for _, name, writer, stamp in rows:
        head = ALL_OURS if name == ALL_OURS else escape_glob(head_of(name)) + "*"
        heads[(head, writer)] = max(stamp, heads.get((head, writer), 0))
    if len(heads) > max_entries:
        writers: dict[int, int] = {}
        for (_, writer), stamp in heads.items():
            writers[writer] = max(stamp, writers.get(writer, 0))
        heads = {(ALL_OURS, w): s for w, s in writers.items()}
    return [(PATTERN, head, writer, stamp) for (head, writer), stamp in heads.items()]


class Journal:
    """Pending invalidations of one location, in its host database."""

    def __init__(self, host: HostState, max_entries: int, guard_seconds: float,
                 batch: int = 500) -> None:
        self.host = host
        self.max_entries = max_entries
        self.guard_seconds = guard_seconds
        self.batch = batch
        self._unchecked = 0  # rows this process recorded since it last checked the bound

    def __len__(self) -> int:
        with self.host.read() as db:
            return int(db.execute("SELECT count(*) FROM journal").fetchone()[0])

    @property
    def overflows(self) -> int:
        """How many times the journal was folded to stay within its bound."""
        return self.host.meta("journal_overflows")

    def record_keys(self, db: sqlite3.Connection, keys: list[str], stamp: int) -> None:
        """Remember that ``keys`` were invalidated at ``stamp`` (inside a transaction)."""
        writer, seq = stamp >> WRITER_SHIFT, stamp & SEQ_MASK
        db.executemany("INSERT INTO journal VALUES (0, ?, ?, ?) ON CONFLICT DO UPDATE "
                       "SET stamp = max(stamp, excluded.stamp)",
                       [(k, writer, seq) for k in keys])
        self._bound(db, len(keys))

    def record_pattern(self, db: sqlite3.Connection, pattern: str, stamp: int) -> None:
        """Remember a pattern invalidation; it absorbs the key rows it matches (keeping their
        writers' stamps, which the late-write guard compares)."""
        db.execute("INSERT INTO journal SELECT 1, ?, writer, max(stamp) FROM journal "
                   "WHERE kind = 0 AND redis_match(?, name) GROUP BY writer "
                   "ON CONFLICT DO UPDATE SET stamp = max(stamp, excluded.stamp)",
                   (pattern, pattern))
        db.execute("DELETE FROM journal WHERE kind = 0 AND redis_match(?, name)", (pattern,))
        db.execute("INSERT INTO journal VALUES (1, ?, ?, ?) ON CONFLICT DO UPDATE "
                   "SET stamp = max(stamp, excluded.stamp)",
                   (pattern, stamp >> WRITER_SHIFT, stamp & SEQ_MASK))
        self._bound(db, 64)  # patterns are rare and absorb rows: count now

    def _bound(self, db: sqlite3.Connection, added: int = 1) -> None:
        """Fold past ``max_entries`` rows. Counting costs a scan, so a process counts after
        every ``max_entries // 16`` rows it added, at most 64 (the bound may be passed by that
        much per process)."""
        self._unchecked += added
        if self._unchecked < min(64, self.max_entries // 16):
            return
        self._unchecked = 0
        if db.execute("SELECT count(*) FROM journal").fetchone()[0] <= self.max_entries:
            return
        rows = db.execute("SELECT kind, name, writer, stamp FROM journal").fetchall()
        db.execute("DELETE FROM journal")
        db.executemany("INSERT INTO journal VALUES (?, ?, ?, ?)", fold(rows, self.max_entries))
        self.host.bump(db, "journal_overflows", 1)

    def rows(self) -> list[Row]:
        """Every pending row (to carry them over to another database): read by the writer
        connection, which still reads a database whose directory was removed."""
        with self.host.lock():
            db = self.host.writer()
            return list(db.execute("SELECT kind, name, writer, stamp FROM journal"))

    def adopt(self, rows: list[Row]) -> None:
        """Take over ``rows`` recorded elsewhere (kept as they are, bounded as usual)."""
        with self.host.transaction() as db:
            db.executemany("INSERT INTO journal VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE "
                           "SET stamp = max(stamp, excluded.stamp)", rows)
            self._bound(db, 64)

    def plan(self) -> list[Work]:
        """The replay steps for what is pending now (a snapshot, with the rows it covers)."""
        with self.host.read() as db:
            rows: list[Row] = db.execute(
                "SELECT kind, name, writer, stamp FROM journal ORDER BY kind, name").fetchall()
        by_key: dict[str, list[Row]] = {}
        by_pattern: dict[str, list[Row]] = {}
        for row in rows:
            (by_pattern if row[0] == PATTERN else by_key).setdefault(row[1], []).append(row)
        keys = list(by_key)
        work = [Work(keys=tuple(batch), rows=tuple(r for k in batch for r in by_key[k]))
                for batch in (keys[i : i + self.batch] for i in range(0, len(keys), self.batch))]
        return work + [Work(pattern=p, rows=tuple(r)) for p, r in by_pattern.items()]

    def done(self, work: Work) -> None:
        """Redis confirmed ``work``: drop its rows unless re-recorded since; keep tombstones."""
        until = host_clock() + self.guard_seconds
        with self.host.transaction() as db:
            db.executemany("DELETE FROM journal WHERE kind=? AND name=? AND writer=? AND stamp=?",
                           work.rows)
            db.executemany("INSERT INTO tombstones VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
                           "SET stamp = max(stamp, excluded.stamp), until = excluded.until",
                           [(*row, until) for row in work.rows])
            self.host.bump(db, "replayed", len(work.rows))

    def guard(self) -> Guard:
        """The tombstones still in force, for this process's reads."""
        now = host_clock()
        try:
            with self.host.read() as db:
                rows = db.execute("SELECT kind, name, writer, stamp, until FROM tombstones "
                                  "WHERE until > ?", (now,)).fetchall()
        except sqlite3.Error:  # unreadable: no late-write check rather than a failed call
            return Guard()
        return Guard(rows)

    def expire_tombstones(self) -> None:
        """Forget tombstones past their time (the recoverer does it)."""
        with self.host.transaction() as db:
            db.execute("DELETE FROM tombstones WHERE until <= ?", (host_clock(),))


class Guard:
    """Tombstones loaded by one process after a recovery: rejects late writes (pure)."""

    __slots__ = ("keys", "patterns", "until")

    def __init__(self, rows: Sequence[tuple[int, str, int, int, float]] = ()) -> None:
        self.keys: dict[tuple[str, int], int] = {}
        self.patterns: list[tuple[Glob, int, int]] = []
        self.until = max((r[4] for r in rows), default=0.0)
        for kind, name, writer, stamp, _ in rows:
            if kind == KEY:
                self.keys[(name, writer)] = max(stamp, self.keys.get((name, writer), 0))
            else:
                self.patterns.append((compile_glob(name), writer, stamp))

    def blocks(self, key: str, stamp: int, now: float) -> bool:
        """Whether ``stamp`` (a payload's) is older than a tombstone of its writer on ``key``."""
        if now >= self.until:
            return False
        writer, seq = stamp >> WRITER_SHIFT, stamp & SEQ_MASK
        if self.keys.get((key, writer), 0) > seq:
            return True
        return any(w == writer and s > seq and glob.matches(key)
                   for glob, w, s in self.patterns)
