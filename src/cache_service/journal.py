"""Outage journal: invalidations made while Redis was unreachable, replayed on recovery (pure).

While the breaker is open, every delete, overwrite (``set``), ``invalidate_pattern`` and
``clear_all`` is recorded here with a stamp (see ``codec.Stamper``). Recovery replays the
journal against Redis before any read is served from it. Entries are removed only once
Redis confirmed them, so a replay cut short resumes later and loses nothing.

Bounded: past ``max_entries`` the journal folds into whole-prefix clears ("heads"), and past
that into one clear of every key this library owns.

After replay the entries stay for ``guard_seconds`` as tombstones: a write of ours that timed
out before the outage and reaches Redis late carries an older stamp than the tombstone, so a
read treats it as a miss instead of serving it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .keys import NAMESPACE, escape_glob, glob_to_regex

__all__ = ["Journal", "Work"]

ALL_OURS = NAMESPACE + "*"


@dataclass(frozen=True)
class Work:
    """One replay step: UNLINK ``keys``, or SCAN+UNLINK what ``pattern`` matches."""

    keys: tuple[str, ...] = ()
    pattern: str | None = None


def head_of(full_key_or_pattern: str) -> str:
    """``cs:{prefix}::`` of a namespaced key or pattern."""
    end = full_key_or_pattern.find("::", len(NAMESPACE))
    return full_key_or_pattern[: end + 2] if end >= 0 else NAMESPACE


class Journal:
    """Pending invalidations, deduplicated per key and bounded; then tombstones for a while."""

    def __init__(self, max_entries: int, guard_seconds: float, batch: int = 500) -> None:
        self.max_entries = max_entries
        self.guard_seconds = guard_seconds
        self.batch = batch
        self.lock = threading.Lock()
        self.keys: dict[str, int] = {}
        self.patterns: dict[str, int] = {}
        self.overflows = 0
        self.recorded = 0
        self.replayed = 0
        self.guard_until = 0.0
        self._guard_keys: dict[str, int] = {}
        self._guard_patterns: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.keys) + len(self.patterns)

    def record_keys(self, keys: list[str], stamp: int) -> None:
        """Remember that ``keys`` were invalidated at ``stamp``."""
        with self.lock:
            self.recorded += len(keys)
            for key in keys:
                self.keys[key] = stamp
            self._bound()

    def record_pattern(self, pattern: str, stamp: int) -> None:
        """Remember a pattern invalidation; it subsumes the keys it matches."""
        with self.lock:
            self.recorded += 1
            regex = glob_to_regex(pattern)
            for key in [k for k in self.keys if regex.fullmatch(k)]:
                del self.keys[key]
            self.patterns[pattern] = stamp
            self._bound()

    def _bound(self) -> None:
        if len(self) <= self.max_entries:
            return
        self.overflows += 1
        heads: dict[str, int] = {}
        for entry, stamp in (*self.keys.items(), *self.patterns.items()):
            head = escape_glob(head_of(entry)) + "*" if entry != ALL_OURS else ALL_OURS
            heads[head] = max(stamp, heads.get(head, 0))
        self.keys.clear()
        if len(heads) > self.max_entries:
            heads = {ALL_OURS: max(heads.values())}
        self.patterns = heads

    def plan(self) -> list[Work]:
        """The replay steps for what is pending now (a snapshot)."""
        with self.lock:
            keys = list(self.keys)
            patterns = list(self.patterns)
        work = [Work(keys=tuple(keys[i : i + self.batch])) for i in range(0, len(keys), self.batch)]
        return work + [Work(pattern=p) for p in patterns]

    def done(self, work: Work, stamps: dict[str, int], now: float) -> None:
        """Redis confirmed ``work``: drop it unless re-recorded since, and keep a tombstone."""
        with self.lock:
            entries = self.patterns if work.pattern is not None else self.keys
            guard = self._guard_patterns if work.pattern is not None else self._guard_keys
            names = (work.pattern,) if work.pattern is not None else work.keys
            for name in names:
                stamp = stamps.get(name)
                if stamp is not None and entries.get(name) == stamp:
                    del entries[name]
                    self.replayed += 1
                if stamp is not None:
                    guard[name] = max(stamp, guard.get(name, 0))
            self.guard_until = now + self.guard_seconds

    def stamps(self, work: Work) -> dict[str, int]:
        """The current stamps of ``work``'s entries (read before replaying it)."""
        with self.lock:
            if work.pattern is not None:
                stamp = self.patterns.get(work.pattern)
                return {} if stamp is None else {work.pattern: stamp}
            return {k: self.keys[k] for k in work.keys if k in self.keys}

    def invalidated_after(self, key: str, stamp: int, now: float) -> bool:
        """Whether a tombstone newer than ``stamp`` covers ``key`` (a late write of ours)."""
        if now >= self.guard_until:
            if self._guard_keys or self._guard_patterns:
                with self.lock:
                    if now >= self.guard_until:
                        self._guard_keys.clear()
                        self._guard_patterns.clear()
            return False
        if self._guard_keys.get(key, 0) > stamp:
            return True
        return any(s > stamp and glob_to_regex(p).fullmatch(key)
                   for p, s in list(self._guard_patterns.items()))
