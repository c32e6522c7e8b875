"""Counters kept per service and per target (plain ints: cheap on the hot path)."""

from __future__ import annotations

__all__ = ["ServiceCounters", "TargetCounters"]


class ServiceCounters:
    """What one service's callers did."""

    __slots__ = ("deletes", "hits", "invalidations", "misses", "sets")

    def __init__(self) -> None:
        self.hits = self.misses = self.sets = self.deletes = self.invalidations = 0

    def snapshot(self) -> dict[str, int]:
        """A copy as a dict."""
        return {name: getattr(self, name) for name in self.__slots__}


class TargetCounters:
    """What happened on one Redis location, whichever service caused it."""

    __slots__ = ("corrupt", "entries_dropped", "errors", "memory_reads", "memory_writes",
                 "replays", "stale_blocked")

    def __init__(self) -> None:
        self.errors = self.memory_reads = self.memory_writes = self.replays = 0
        self.entries_dropped = self.corrupt = self.stale_blocked = 0

    def snapshot(self) -> dict[str, int]:
        """A copy as a dict."""
        return {name: getattr(self, name) for name in self.__slots__}
