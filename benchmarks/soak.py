"""Soak: worker processes under load for a long run with a fault every minute (issue 16).

A private ``redis-server`` sits behind ``tests.servers.ChaosProxy``; the host state directory
is a small tmpfs of its own (so "disk full" is real), or a temp dir when mounting is not
allowed (then that fault is skipped and the output says so). ``--workers`` processes (4)
share one ``CacheService`` prefix; each owns a quarter of the keys and writes or deletes only
those, every process reads all of them. Faults cycle, one a minute, each lasting
``--fault-seconds`` (10): ``cut`` (connections reset, connects refused), ``hang`` (nothing
forwarded: every request times out), ``kill`` (SIGKILL, down, then restarted empty),
``restart`` (SIGKILL and back at once, empty), ``disk-full`` (the state tmpfs filled to the
last byte, then Redis cut while it is full, so outage writes meet the full disk).

Stale reads: every value carries its key's version; after each acknowledged write
(``set`` returned True) or delete the owner publishes the key's version in shared memory. A
read that starts after a publication and returns an older version is stale, in any process.
A miss is always allowed.

Flat resources: every 5 s the parent samples each worker's RSS, open descriptors and
threads (``/proc``), and the state directory's bytes; the report compares the first and
the last minute.

Targets: 0 stale reads, 0 exceptions raised to callers, RSS / descriptors / threads / disk
flat (last minute within 10 % + a small constant of the first).

Run: ``.venv/bin/python -m benchmarks.soak [--minutes 30] [--quick]``; writes
``benchmarks/results/soak.txt`` (not with ``--quick`` or ``--no-write``).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import ChaosProxy, RedisServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
KEYS = 400
PACE = 0.0005
FAULTS = ("cut", "hang", "kill", "restart", "disk-full")
OPTIONS: dict[str, Any] = {"socket_timeout": 0.25, "connect_timeout": 0.25,
                           "breaker_min_backoff": 0.2, "breaker_max_backoff": 1.0}


@dataclass(frozen=True)
class Shared:
    """What the parent hands every worker process."""

    workers: int
    url: str
    state_dir: str
    published: Any  # multiprocessing Array: the last acknowledged version of each key
    stop: Any  # multiprocessing Event
    results: Any  # multiprocessing Queue


def worker(wid: int, shared: Shared) -> None:
    """Paced get/set/delete until ``stop``; counts calls, exceptions and stale reads."""
    from cache_service import CacheService

    workers, url, state_dir = shared.workers, shared.url, shared.state_dir
    published, stop, results = shared.published, shared.stop, shared.results

    cache = CacheService("soak", url=url, state_dir=state_dir, default_ttl=600, **OPTIONS)
    rng = random.Random(wid)
    own = [k for k in range(KEYS) if k % workers == wid]
    version = dict.fromkeys(own, 0)
    calls = exceptions = stale = 0
    kinds: dict[str, int] = {}
    while not stop.is_set():
        calls += 1
        roll = rng.random()
        try:
            if roll < 0.15:
                key = rng.choice(own)
                version[key] += 1
                if cache.set(f"k{key}", {"v": version[key], "w": wid}):
                    published[key] = version[key]
            elif roll < 0.2:
                key = rng.choice(own)
                version[key] += 1
                cache.delete(f"k{key}")
                published[key] = version[key]
            else:
                key = rng.randrange(KEYS)
                floor = published[key]
                value = cache.get(f"k{key}")
                if value is not None and value["v"] < floor:
                    stale += 1
        except Exception as exc:  # the soak counts what reaches callers
            exceptions += 1
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
        time.sleep(PACE)
    results.put((wid, calls, exceptions, stale, kinds, cache.stats()["target"]))


def proc_figures(pid: int) -> tuple[int, int, int]:
    """RSS in KiB, open descriptors and threads of ``pid``."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (files may vanish meanwhile)."""
    total = 0
    for entry in path.rglob("*"):
        with contextlib.suppress(OSError):
            if entry.is_file():
                total += entry.stat().st_size
    return total


@contextlib.contextmanager
def state_tmpfs(size: str) -> Iterator[tuple[Path, bool]]:
    """A tmpfs of ``size`` for the host state (True), or a plain temp dir (False)."""
    path = Path(tempfile.mkdtemp(prefix="cache-service-soak-"))
    state = path / "state"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(path)], capture_output=True, check=False).returncode == 0
    state.mkdir(mode=0o700)
    try:
        yield state, mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


def fill(path: Path) -> Path:
    """Fill the filesystem of ``path`` to the last byte; the filler file."""
    filler = path.parent / "filler"
    for chunk in (b"\0" * 65536, b"\0"):
        with contextlib.suppress(OSError), open(filler, "ab") as out:
            while True:
                out.write(chunk)
                out.flush()
    return filler


def apply_fault(fault: str, server: RedisServer, proxy: ChaosProxy, state: Path, *,
                seconds: float, mounted: bool) -> str:
    """Make ``fault`` for ``seconds`` and heal it; what was done."""
    if fault == "cut":
        proxy.cut()
        time.sleep(seconds)
        proxy.heal()
    elif fault == "hang":
        proxy.hang()
        time.sleep(seconds)
        proxy.heal()
    elif fault == "kill":
        server.kill()
        time.sleep(seconds)
        server.restart(keep_data=False)
    elif fault == "restart":
        server.restart(keep_data=False)
        time.sleep(seconds)
    elif fault == "disk-full":
        if not mounted:
            time.sleep(seconds)
            return "disk-full skipped (no tmpfs could be mounted here)"
        filler = fill(state)
        time.sleep(seconds / 2)
        proxy.cut()
        time.sleep(seconds / 2)
        proxy.heal()
        filler.unlink()
    return fault


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--fault-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="3 minutes, nothing written")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    minutes = 3.0 if args.quick else args.minutes
    ctx = mp.get_context("spawn")
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    with RedisServer(name="soak") as server, ChaosProxy(*server.address) as proxy, \
            state_tmpfs("8m") as (state, mounted):
        published = ctx.Array("q", KEYS, lock=False)
        stop, results = ctx.Event(), ctx.Queue()
        shared = Shared(args.workers, proxy.url, str(state), published, stop, results)
        procs = [ctx.Process(target=worker, args=(w, shared)) for w in range(args.workers)]
        for proc in procs:
            proc.start()
        say(f"soak: {args.workers} workers, {minutes:g} min, a fault every minute "
            f"({', '.join(FAULTS)}), state on {'tmpfs 8 MiB' if mounted else 'a temp dir'}")
        samples: list[tuple[float, list[tuple[int, int, int]], int]] = []
        started = time.monotonic()
        next_fault, faults_done = started + 30.0, 0
        while time.monotonic() - started < minutes * 60:
            now = time.monotonic()
            samples.append((now - started, [proc_figures(p.pid or 0) for p in procs],
                            dir_bytes(state)))
            if now >= next_fault:
                fault = FAULTS[faults_done % len(FAULTS)]
                done = apply_fault(fault, server, proxy, state, seconds=args.fault_seconds,
                                   mounted=mounted)
                say(f"  {now - started:7.1f}s  {done}")
                faults_done += 1
                next_fault += 60.0
            time.sleep(5.0)
        stop.set()
        outcome = sorted(results.get(timeout=60) for _ in procs)
        for proc in procs:
            proc.join(timeout=30)
    report(say, outcome, samples)
    if not (args.quick or args.no_write):
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "soak.txt").write_text("\n".join(lines) + "\n")


def report(say: Any, outcome: list[Any], samples: list[Any]) -> None:
    """Totals, and first-minute vs last-minute resource figures."""
    calls = sum(o[1] for o in outcome)
    exceptions = sum(o[2] for o in outcome)
    stale = sum(o[3] for o in outcome)
    say(f"calls {calls:,}  exceptions {exceptions}  stale reads {stale}")
    for wid, _c, _e, _s, kinds, target in outcome:
        if kinds:
            say(f"  worker {wid} exceptions: {kinds}")
        say(f"  worker {wid}: breaker opened {target.get('breaker_opened')} times, "
            f"state_problem {target.get('state_problem')!r}")
    first = [s for s in samples if s[0] <= 60]
    last = [s for s in samples if s[0] >= samples[-1][0] - 60]
    flat = True
    for index, (name, slack) in enumerate((("RSS KiB", 4096), ("fds", 4), ("threads", 2))):
        before = max(max(w[index] for w in s[1]) for s in first)
        after = max(max(w[index] for w in s[1]) for s in last)
        ok = after <= before * 1.10 + slack
        flat &= ok
        say(f"  {name:8} first minute max {before:>8}  last minute max {after:>8}  "
            f"{'flat' if ok else 'GREW'}")
    disk_before = max(s[2] for s in first)
    disk_after = max(s[2] for s in last)
    disk_ok = disk_after <= disk_before * 1.10 + 256 * 1024
    flat &= disk_ok
    say(f"  {'disk B':8} first minute max {disk_before:>8}  last minute max {disk_after:>8}  "
        f"{'flat' if disk_ok else 'GREW'}")
    verdict = stale == 0 and exceptions == 0 and flat
    say(f"targets: {'met' if verdict else 'MISSED'}")
    if not verdict:
        sys.exit(1)


if __name__ == "__main__":
    main()
