"""What callers see while Redis is cut off, healed, hung and healed again (issue 3).

A private ``redis-server`` sits behind ``tests.servers.ChaosProxy`` and the service's URL points
at the proxy. Worker threads keep a steady paced mix of get / set / delete on a few hundred
keys while the proxy goes through the phases: steady, cut (connections reset, connects
refused), heal, hang (connections accepted but nothing forwarded: every request times out),
heal. Per phase it reports p50 / p99 / max call latency, p99 once the breaker is open,
exceptions raised to callers, stale reads, hit ratio, time to open and time to recover.

Stale reads: every value carries a version (a global counter). Each key has a lock that a
worker holds for the whole call, so the calls on one key form a single history and the
model of "latest completed write or delete" is exact: a read returning an older version than
that (or any value after a delete) is stale. A miss is always allowed. A worker whose key is
busy picks another key instead of waiting, so a slow call (e.g. the probe) stalls no one else.

Recovery time: from ``heal()`` returning until ``stats()`` shows the breaker closed (backend
"redis" again); sampled every 2 ms by a monitor thread, which also records the backend strip.

Targets: p99 while Redis is down below 0.1 ms after the breaker opens; recovery within 2 s;
zero exceptions; zero stale reads.

Run: ``.venv/bin/python -m benchmarks.outage [--quick]``; writes benchmarks/results/outage.txt
and outage.png.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import platform
import random
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from tests.servers import ChaosProxy, RedisServer

from cache_service import CacheService

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SERVICE_OPTIONS: dict[str, Any] = {
    "breaker_min_backoff": 0.2,
    "breaker_max_backoff": 1.0,
    "socket_timeout": 0.25,
    "connect_timeout": 0.25,
}
KEYS = 300
THREADS = 4
PACE = 0.0005  # seconds each worker sleeps between calls (steady load, not a flood)
MIX = (("get", 0.7), ("set", 0.2), ("delete", 0.1))
OPEN_STATES = ("open", "probing", "draining")
# Proxy command per fault. "slow" (--late-writes): every byte held 2.5 s each way, so the
# requests in flight time out, yet reach Redis after the journal replay that follows the
# heal: late writes, which the journal's tombstones must keep from being served.
FAULTS = {"none": "heal", "cut": "cut", "hang": "hang", "slow": "latency 2.5"}


@dataclass
class Phase:
    """One stretch of the run with the proxy in one mode."""

    name: str
    seconds: float
    fault: str  # "none", "cut" or "hang"
    start: float = 0.0  # when the proxy was told to change mode (run clock)
    applied: float = 0.0  # when the new mode was in effect
    end: float = 0.0
    opened_at: float | None = None  # first monitor sample with the breaker not closed
    closed_at: float | None = None  # first monitor sample with the breaker closed again


@dataclass
class Call:
    """One timed call by a worker."""

    start: float  # run clock, seconds
    latency: float  # seconds
    op: str
    outcome: str  # "hit", "miss", "ok", "stale", "phantom" or "error"


@dataclass
class Model:
    """Per key: a lock held for whole calls and the latest completed write (version, present)."""

    locks: list[threading.Lock]
    latest: list[tuple[int, bool]]
    versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


@dataclass
class Run:
    """Everything one run recorded."""

    phases: list[Phase]
    calls: list[Call]
    samples: list[tuple[float, str]]  # (run clock, breaker state) from the monitor
    errors: list[str]
    stale: list[str]
    stats: dict[str, Any]
    wall: float
    redis_version: str


OPS = ("get", "set", "delete")
OUTCOMES = ("hit", "miss", "ok", "stale", "phantom", "error")


class Recorder:
    """One worker's calls in flat arrays: nothing for the garbage collector to walk, so
    the benchmark's own bookkeeping adds no GC pauses to the latencies it measures."""

    def __init__(self) -> None:
        self.starts = array("d")
        self.latencies = array("d")
        self.codes = bytearray()  # op index * 16 + outcome index

    def add(self, start: float, latency: float, op: str, outcome: str) -> None:
        """Record one call."""
        self.starts.append(start)
        self.latencies.append(latency)
        self.codes.append(OPS.index(op) * 16 + OUTCOMES.index(outcome))

    def calls(self) -> list[Call]:
        """The recorded calls as objects (after the run)."""
        return [Call(s, lat, OPS[code >> 4], OUTCOMES[code & 15])
                for s, lat, code in zip(self.starts, self.latencies, self.codes, strict=True)]


@dataclass
class Shared:
    """What the workers and the monitor share."""

    svc: CacheService
    model: Model
    clock: Callable[[], float]
    stop: threading.Event = field(default_factory=threading.Event)
    records: list[Recorder] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    samples: list[tuple[float, str]] = field(default_factory=list)


def judge(key: str, result: Any, expected: int, present: bool) -> tuple[str, str | None]:
    """Classify a get against the model: an outcome and, for a wrong read, a description."""
    if result is None:
        return "miss", None
    if result.get("k") != key or result.get("v", 0) > expected:
        return "phantom", f"get {key}: {result!r}, expected v{expected} present={present}"
    if result["v"] < expected or not present:
        return "stale", (f"get {key}: got v{result['v']}, latest is v{expected} "
                         f"({'set' if present else 'deleted'})")
    return "hit", None


def worker(shared: Shared, seed: int) -> None:
    """Paced random get/set/delete calls, each checked against the model."""
    svc, model, clock = shared.svc, shared.model, shared.clock
    record = Recorder()
    shared.records.append(record)
    rng = random.Random(seed)
    ops = [name for name, _ in MIX]
    weights = [w for _, w in MIX]
    perf = time.perf_counter
    while not shared.stop.is_set():
        i = rng.randrange(KEYS)
        key = f"k{i}"
        op = rng.choices(ops, weights)[0]
        lock = model.locks[i]
        if not lock.acquire(blocking=False):
            continue  # another worker is on this key (maybe a slow probe): take another one
        try:
            expected, present = model.latest[i]
            version = next(model.versions) if op == "set" else 0
            result: Any = None
            wrong: str | None = None
            started = clock()
            t0 = perf()
            try:
                if op == "get":
                    result = svc.get(key)
                elif op == "set":
                    svc.set(key, {"k": key, "v": version, "pad": "x" * 64})
                else:
                    svc.delete(key)
            except Exception as exc:  # the benchmark counts what callers would see
                latency = perf() - t0
                outcome = "error"
                shared.errors.append(f"{started:7.3f}s {op} {key}: {type(exc).__name__}: {exc}")
            else:
                latency = perf() - t0
                outcome = "ok"
                if op == "set":
                    model.latest[i] = (version, True)
                elif op == "delete":
                    model.latest[i] = (next(model.versions), False)
                else:
                    outcome, wrong = judge(key, result, expected, present)
        finally:
            lock.release()
        if wrong is not None:
            shared.stale.append(f"{started:7.3f}s {wrong}")
        record.add(started, latency, op, outcome)
        time.sleep(PACE)


def monitor(shared: Shared) -> None:
    """Sample the breaker state every 2 ms (the backend strip and recovery times)."""
    while not shared.stop.is_set():
        shared.samples.append((shared.clock(), shared.svc.stats()["target"]["breaker_state"]))
        time.sleep(0.002)


def serve_proxy(host: str, port: int) -> None:
    """Child process: a ChaosProxy in front of (host, port), one command per stdin line."""
    with ChaosProxy(host, port) as proxy:
        print(proxy.port, flush=True)
        for line in sys.stdin:
            name, *args = line.split()
            if name == "close":
                break
            if name == "latency":
                proxy.latency(float(args[0]), upstream=True)
            else:
                getattr(proxy, name)()
            print("ok", flush=True)


class ProxyProcess:
    """tests.servers.ChaosProxy in its own process, so its forwarding thread does not compete
    with the load for this process's GIL (which would add to every Redis call's latency)."""

    def __init__(self, host: str, port: int) -> None:
        code = f"from benchmarks.outage import serve_proxy; serve_proxy({host!r}, {port})"
        self._process = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        self.port = int(self._reply())
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _reply(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the proxy process exited (see its stderr above)")
        return line.strip()

    def command(self, command: str) -> None:
        """``cut``, ``hang``, ``heal`` or ``latency SECONDS`` (both directions); returns once
        the proxy applied it."""
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        if self._reply() != "ok":
            raise RuntimeError(f"the proxy did not apply {command!r}")

    def close(self) -> None:
        """Stop the proxy process (it closes its sockets on the way out)."""
        if self._process.poll() is None:
            with contextlib.suppress(OSError):
                assert self._process.stdin is not None
                self._process.stdin.write("close\n")
                self._process.stdin.flush()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()


def run(phases: list[Phase]) -> Run:
    """Start Redis and the proxy, drive the load through ``phases``, tear everything down."""
    began = time.monotonic()
    t_zero = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - t_zero

    with RedisServer(name="outage") as server, contextlib.ExitStack() as cleanup:
        proxy = ProxyProcess(*server.address)
        cleanup.callback(proxy.close)
        version = str(server.client().info("server")["redis_version"])
        svc = CacheService("outage", url=proxy.url, **SERVICE_OPTIONS)
        cleanup.callback(svc.close)
        model = Model(locks=[threading.Lock() for _ in range(KEYS)],
                      latest=[(0, False)] * KEYS)
        for i in range(KEYS):  # start warm: every key holds a value on Redis
            v = next(model.versions)
            svc.set(f"k{i}", {"k": f"k{i}", "v": v, "pad": "x" * 64})
            model.latest[i] = (v, True)
        shared = Shared(svc, model, clock)
        threads = [threading.Thread(target=worker, name=f"load-{n}", daemon=True,
                                    args=(shared, n)) for n in range(THREADS)]
        threads.append(threading.Thread(target=monitor, name="monitor", daemon=True,
                                        args=(shared,)))
        try:
            for t in threads:
                t.start()
            for phase in phases:
                phase.start = clock()
                proxy.command(FAULTS[phase.fault])
                phase.applied = clock()
                time.sleep(phase.seconds)
                phase.end = clock()
        finally:
            shared.stop.set()
            for t in threads:
                t.join(timeout=5)
        stats = svc.stats()
    calls = sorted((c for rec in shared.records for c in rec.calls()), key=lambda c: c.start)
    samples = shared.samples
    for phase in phases:
        window = [s for s in samples if phase.start <= s[0] < phase.end]
        phase.opened_at = next((t for t, s in window if s in OPEN_STATES), None)
        phase.closed_at = next((t for t, s in window if s == "closed"), None)
    return Run(phases, calls, samples, shared.errors, shared.stale, stats,
               time.monotonic() - began, version)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds for the table."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.3f}" if seconds < 0.01 else f"{seconds * 1000:.1f}"


def by_phase(r: Run) -> list[list[Call]]:
    """Calls per phase, by start time; a call still running when a fault began counts for
    that fault's phase (the fault hit it), not for the calm phase it started in."""
    out: list[list[Call]] = [[] for _ in r.phases]
    i = 0
    for c in r.calls:  # sorted by start
        while i + 1 < len(r.phases) and c.start >= r.phases[i + 1].start:
            i += 1
        j = i
        nxt = r.phases[j + 1] if j + 1 < len(r.phases) else None
        if (nxt is not None and r.phases[j].fault == "none" and nxt.fault != "none"
                and c.start + c.latency > nxt.start):
            j += 1
        if c.start < r.phases[-1].end:
            out[j].append(c)
    return out


def summarize(r: Run) -> tuple[str, bool]:
    """The per-phase table, the verdicts, and whether every target was met."""
    rows = []
    verdicts = []
    worst: list[tuple[float, str, Call]] = []
    ok = True
    previous_fault = "none"
    for phase, calls in zip(r.phases, by_phase(r), strict=True):
        lat = [c.latency for c in calls] or [0.0]
        gets = [c for c in calls if c.op == "get"]
        hits = sum(c.outcome == "hit" for c in gets)
        errors = sum(c.outcome == "error" for c in calls)
        stale = sum(c.outcome in ("stale", "phantom") for c in calls)
        slow = sum(c.latency > 0.010 for c in calls)
        after_open: list[float] = []
        to_open = recover = None
        if phase.fault != "none" and phase.opened_at is not None:
            to_open = phase.opened_at - phase.start
            after_open = [c.latency for c in calls if c.start >= phase.opened_at]
        worst.extend((c.latency, phase.name, c) for c in calls)
        if phase.fault == "none" and previous_fault != "none":
            recover = None if phase.closed_at is None else phase.closed_at - phase.applied
        rows.append(
            f"{phase.name:<8} {phase.end - phase.start:5.1f} {len(calls):7d} "
            f"{len(calls) / (phase.end - phase.start):7.0f} {ms(pct(lat, 50)):>8} "
            f"{ms(pct(lat, 99)):>8} {ms(max(lat)):>8} "
            f"{ms(pct(after_open, 99) if after_open else None):>10} "
            f"{ms(max(after_open) if after_open else None):>9} {slow:6d} {errors:5d} {stale:5d} "
            f"{(hits / len(gets) if gets else 0):6.1%} "
            f"{ms(to_open):>8} {ms(recover):>8}"
        )
        if phase.fault != "none":
            good = bool(after_open) and pct(after_open, 99) < 0.0001
            ok &= good
            verdicts.append(f"  {'PASS' if good else 'FAIL'}  {phase.name}: p99 after the breaker "
                            f"opened {ms(pct(after_open, 99) if after_open else None)} ms "
                            f"(target < 0.1 ms)")
        if recover is not None or (phase.fault == "none" and previous_fault != "none"):
            good = recover is not None and recover <= 2.0
            ok &= good
            verdicts.append(f"  {'PASS' if good else 'FAIL'}  {phase.name} after "
                            f"{previous_fault}: recovered in {ms(recover)} ms (target <= 2 s)")
        previous_fault = phase.fault
    total_errors = sum(c.outcome == "error" for c in r.calls)
    total_stale = sum(c.outcome in ("stale", "phantom") for c in r.calls)
    ok &= total_errors == 0 and total_stale == 0
    verdicts.append(f"  {'PASS' if total_errors == 0 else 'FAIL'}  exceptions seen by callers: "
                    f"{total_errors} (target 0)")
    verdicts.append(f"  {'PASS' if total_stale == 0 else 'FAIL'}  stale reads: {total_stale} "
                    f"of {sum(c.op == 'get' for c in r.calls)} gets (target 0)")
    target = r.stats["target"]
    opts = ", ".join(f"{k}={v}" for k, v in SERVICE_OPTIONS.items())
    lines = [
        "cache_service outage benchmark (benchmarks/outage.py)",
        f"python {platform.python_version()}, redis-py {redis.__version__}, redis-server "
        f"{r.redis_version} behind tests.servers.ChaosProxy on loopback",
        f"service: CacheService('outage', url=<proxy>, {opts})",
        f"load: {THREADS} threads, {KEYS} keys, mix "
        + " / ".join(f"{n} {w:.0%}" for n, w in MIX)
        + f", {PACE * 1000:.1f} ms pause between a thread's calls; wall time {r.wall:.0f} s",
        "latencies in ms; 'p99 open' = p99 of calls started after the breaker was seen open "
        "(monitor samples every 2 ms);",
        "'>10ms' = calls slower than 10 ms; 'to open' = fault -> breaker seen open;",
        "'recover' = heal() returned -> breaker seen closed (backend 'redis').",
        "",
        f"{'phase':<8} {'secs':>5} {'calls':>7} {'calls/s':>7} {'p50':>8} {'p99':>8} "
        f"{'max':>8} {'p99 open':>10} {'max open':>9} {'>10ms':>6} {'exc':>5} {'stale':>5} "
        f"{'hits':>6} {'to open':>8} {'recover':>8}",
        *rows,
        "",
        "targets:",
        *verdicts,
        "",
        f"service stats at the end: breaker opened {target['breaker_opened']}x, closed "
        f"{target['breaker_closed']}x, errors {target['errors']}, replays {target['replays']}, "
        f"memory reads {target['memory_reads']}, memory writes {target['memory_writes']}, "
        f"stale blocked {target['stale_blocked']}, entries dropped {target['entries_dropped']}, "
        f"journal overflows {target['journal_overflows']}",
    ]
    slow_calls = [(phase, c) for latency, phase, c in sorted(worst, key=lambda w: w[2].start)
                  if latency > 0.010]
    if slow_calls:
        lines += ["", f"calls over 10 ms ({len(slow_calls)}): start (s), phase, op, latency (ms)"]
        lines += [f"  {c.start:7.3f}  {phase:<6} {c.op:<6} {c.latency * 1000:7.1f}"
                  for phase, c in slow_calls[:24]]
    if r.errors:
        lines += ["", f"first exceptions ({len(r.errors)} in all):", *r.errors[:10]]
    if r.stale:
        lines += ["", f"first stale reads ({len(r.stale)} in all):", *r.stale[:10]]
    return "\n".join(lines), ok


def backend_strip(strip: Any, r: Run) -> None:
    """The breaker state the monitor saw, as colored spans (green: Redis in use)."""
    from matplotlib.patches import Patch

    colors = {"closed": "#2ca02c", "open": "#d62728", "probing": "#ff7f0e",
              "draining": "#9467bd"}
    for (t0, state), (t1, _) in itertools.pairwise(r.samples):
        strip.axvspan(t0, t1, ymin=0.15, ymax=0.85, color=colors.get(state, "grey"), lw=0)
    strip.set_yticks([])
    strip.set_ylabel("backend", rotation=0, ha="right", va="center")
    strip.legend([Patch(color=c) for c in colors.values()],
                 ["redis (closed)", "memory (open)", "memory (probing)", "memory (draining)"],
                 loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=2, fontsize=8,
                 frameon=False)


def chart(r: Run, path: Path) -> None:
    """Latency of every call over time (log axis), outages shaded, backend strip below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, (ax, strip) = plt.subplots(
        2, 1, figsize=(14.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [6, 1]})
    shade = {"cut": "#f4a6a6", "hang": "#f7d08a", "slow": "#b9c7f0"}
    for phase in r.phases:
        if phase.fault in shade:
            for a in (ax, strip):
                a.axvspan(phase.start, phase.end, color=shade[phase.fault], alpha=0.35, lw=0)
        ax.text((phase.start + phase.end) / 2, 0.97, phase.name, transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=10, weight="bold")
    ok = [c for c in r.calls if c.outcome not in ("error", "stale", "phantom")]
    bad = [c for c in r.calls if c.outcome in ("error", "stale", "phantom")]
    floor = 1e-3  # ms: keep zero-ish timings visible on the log axis
    ax.scatter([c.start for c in ok], [max(c.latency * 1000, floor) for c in ok], s=2,
               alpha=0.25, color="#3b6ea8", lw=0, rasterized=True, label="one call")
    slow = [c for c in ok if c.latency > 0.010]
    if slow:
        ax.scatter([c.start for c in slow], [c.latency * 1000 for c in slow], s=16,
                   facecolors="none", edgecolors="#7a3b00", lw=0.9,
                   label="call > 10 ms (in flight at the fault, or the probe)")
    if bad:
        ax.scatter([c.start for c in bad], [max(c.latency * 1000, floor) for c in bad], s=14,
                   color="#d62728", marker="x", label="exception / stale read")
    bins: dict[int, list[float]] = {}
    width = 0.25
    for c in r.calls:
        bins.setdefault(int(c.start / width), []).append(c.latency * 1000)
    xs = [(b + 0.5) * width for b in sorted(bins)]
    ax.plot(xs, [pct(bins[b], 50) for b in sorted(bins)], color="#1b9e77", lw=1.6,
            label=f"p50 per {width * 1000:.0f} ms")
    ax.plot(xs, [pct(bins[b], 99) for b in sorted(bins)], color="#e7298a", lw=1.6,
            label=f"p99 per {width * 1000:.0f} ms")
    ax.axhline(0.1, color="black", ls="--", lw=0.8)
    ax.text(r.phases[0].start + 0.05, 0.11, "0.1 ms target (breaker open)", fontsize=8,
            va="bottom")
    for phase in r.phases:
        if phase.closed_at is not None and phase.fault == "none" and phase is not r.phases[0]:
            ax.annotate(f"recovered\n+{(phase.closed_at - phase.applied) * 1000:.0f} ms",
                        xy=(phase.closed_at, 0.002), xytext=(phase.closed_at + 0.15, 0.004),
                        fontsize=8, arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.set_yscale("log")
    ax.set_ylim(floor * 0.8, 1000)
    ax.set_ylabel("call latency (ms, log)")
    ax.set_title(f"CacheService under Redis outages: {THREADS} threads, get/set/delete on "
                 f"{KEYS} keys (breaker backoff 0.2-1.0 s, timeouts 0.25 s)", fontsize=11)
    handles, labels = ax.get_legend_handles_labels()
    meaning = {"cut": "cut: connections refused", "hang": "hang: nothing forwarded",
               "slow": "slow: +2.5 s each way (late writes)"}
    for fault in dict.fromkeys(p.fault for p in r.phases if p.fault in shade):
        handles.append(Patch(color=shade[fault], alpha=0.5))
        labels.append(meaning[fault])
    legend = ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                       fontsize=8, frameon=False)
    for handle in legend.legend_handles:
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([20])
        if hasattr(handle, "set_alpha") and not isinstance(handle, Patch):
            handle.set_alpha(1.0)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    backend_strip(strip, r)
    strip.set_xlabel("seconds since start")
    strip.set_xlim(0, r.phases[-1].end)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Run the phases, print the table, write results/outage.txt and outage.png."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s phases (a smoke run)")
    parser.add_argument("--no-write", action="store_true", help="do not write results/")
    parser.add_argument("--late-writes", action="store_true",
                        help="then 3x slow (1 s) + heal: requests delayed 2.5 s, so "
                        "timed-out writes land after the recovery's replay")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    # Expected noise: the service logs each outage and recovery.
    logging.basicConfig(level=logging.WARNING, format="  log: %(message)s", stream=sys.stderr)
    seconds = 1.0 if args.quick else 3.5
    phases = [Phase("steady", seconds, "none"), Phase("cut", seconds, "cut"),
              Phase("heal", seconds, "none"), Phase("hang", seconds, "hang"),
              Phase("heal", seconds, "none")]
    if args.late_writes:
        for _ in range(3):
            phases += [Phase("slow", 1.0, "slow"), Phase("heal", 3.5, "none")]
    result = run(phases)
    text, ok = summarize(result)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "outage.txt").write_text(text + "\n")
        chart(result, RESULTS / "outage.png")
        print(f"\nwrote {RESULTS / 'outage.txt'} and {RESULTS / 'outage.png'}")
    if args.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
