"""The near cache's chaos run (a test and a benchmark): one process writes versioned values,
another reads them through its near cache, while Redis is cut, hung and killed."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any

from .helpers import eventually, unique
from .servers import ChaosProxy, RedisServer
from .workers import Worker

OPTIONS = {"socket_timeout": 0.25, "connect_timeout": 0.25, "breaker_min_backoff": 0.05,
           "breaker_max_backoff": 0.3}
LAG = 0.010  # a read may miss a write acknowledged less than this before it started


@dataclass
class ChaosFigures:
    """What the reader saw."""

    reads: int = 0
    stale_reads: int = 0  # reads of a version older than one acknowledged >= LAG before
    versions: int = 0  # versions the writer had acknowledged
    near_hits: int = 0
    faults: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    times: list[tuple[str, float]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.reads} reads ({self.near_hits} near hits) of {self.versions} versions "
                f"through {', '.join(self.faults)}: {self.stale_reads} stale reads")


def stale_reads(runs: list[list[Any]], acks: list[tuple[int, float]]) -> tuple[int, list[str]]:
    """Reads (in runs of one value) of a version older than the newest one acknowledged at
    least ``LAG`` before the read started. A run's last read is its worst."""
    times = [t for _, t in acks]
    newest = [v for v, _ in acks]
    for i in range(1, len(newest)):
        newest[i] = max(newest[i], newest[i - 1])
    count, examples = 0, []
    for value, _first, last, reads in runs:
        i = bisect.bisect_right(times, last - LAG)
        if i == 0:
            continue
        expected = newest[i - 1]
        if value is None or value >= expected:  # a miss is never stale
            continue
        count += reads
        if len(examples) < 20:
            examples.append(f"read {value} at {last:.3f} after {expected} was acknowledged")
    return count, examples


def chaos_run(server: RedisServer, seconds: float = 7.0) -> ChaosFigures:
    """Run the two processes through a cut, a hang and a kill; the reader's figures."""
    figures = ChaosFigures()
    with ChaosProxy(*server.address) as proxy:
        prefix = unique("near-chaos")
        with Worker(proxy.url, prefix, near_cache=True, **OPTIONS) as reader, \
                Worker(proxy.url, prefix, **OPTIONS) as writer:
            writer.call("set", "v", 0)
            eventually(lambda: reader.call("get", "v") == 0 and reader.call(
                "stats")["target"].get("near_coherent"), timeout=10)
            reader.send("hammer_runs", "v", seconds)
            writer.send("write_paced", "v", seconds, 0.002)
            step = seconds / 7
            time.sleep(step)
            for name, fault, heal in (
                    ("cut", proxy.cut, proxy.heal), ("hang", proxy.hang, proxy.heal),
                    ("kill", server.kill, lambda: server.restart(keep_data=False))):
                figures.times.append((f"{name} at", time.monotonic()))
                fault()
                time.sleep(step)
                heal()
                figures.times.append((f"{name} healed at", time.monotonic()))
                figures.faults.append(name)
                time.sleep(step)
            runs = reader.receive("hammer_runs", timeout=60)
            acks = writer.receive("write_paced", timeout=60)
            figures.near_hits = reader.call("stats")["target"]["near_hits"]
            reader.exit()
            writer.exit()
    figures.reads = sum(run[3] for run in runs)
    figures.versions = len(acks)
    figures.stale_reads, figures.stale = stale_reads(runs, acks)
    return figures
