"""The figures the exporters publish, defined once (no third-party import here).

``integrations.prometheus`` and ``integrations.otel`` both turn ``FIGURES`` into metrics, and
both read them through ``read()``: one pass over the live services (``registry``) that reads
counters and the targets' ``snapshot()`` (breaker, journal and fallback-store figures, kept in
this process or in the host's state files) and never touches Redis.

Each figure names the ``stats()`` key it comes from. Services with the same prefix on the same
target are summed (they count into separate objects but are one cache to an operator).
Adding a group of figures is one change: append a tuple of ``Figure`` rows to ``GROUPS``;
both exporters pick it up. A target figure whose key a target's snapshot lacks (the near
cache's, on a target without one) is not exported for that target.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cache_service import registry
from cache_service._host.state import credentials_fingerprint
from cache_service._runtime.view import RuntimeView, runtime_view
from cache_service.errors import ConfigurationError

if TYPE_CHECKING:
    from cache_service.config import Location
    from cache_service.core import ServiceCore

__all__ = ["BREAKER_STATES", "FIGURES", "GROUPS", "Figure", "Reading", "read", "read_cached"]

Scope = Literal["service", "target"]
Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Figure:
    """One exported figure: ``name`` without prefix or suffix (exporters add them)."""

    name: str
    kind: Kind
    scope: Scope  # "service": labels target and prefix; "target": label target only
    key: str  # the stats() key (target figures: the key in stats()["target"])
    help: str
    unit: str = ""  # Prometheus unit suffix ("bytes"); OTel gets its UCUM form


SERVICE = (
    Figure("hits", "counter", "service", "hits", "Reads that found a live value."),
    Figure("misses", "counter", "service", "misses", "Reads that found no live value."),
    Figure("sets", "counter", "service", "sets", "Values written (set, add, incr, set_many)."),
    Figure("deletes", "counter", "service", "deletes", "Keys deleted by delete()."),
    Figure("invalidations", "counter", "service", "invalidations",
           "Pattern, clear_all and tag invalidations."),
)
BREAKER = (
    Figure("breaker_opened", "counter", "target", "breaker_opened",
           "Times the breaker opened (an outage began: calls went to the fallback store)."),
    Figure("breaker_closed", "counter", "target", "breaker_closed",
           "Times the breaker closed (Redis is back, the journal was replayed)."),
    Figure("errors", "counter", "target", "errors", "Redis requests that failed."),
    Figure("reply_errors", "counter", "target", "reply_errors",
           "Error replies (OOM, NOPERM, BUSY...): that request missed or was refused."),
)
JOURNAL = (
    Figure("journal_entries", "gauge", "target", "journal_size",
           "Invalidations journaled during the outage, waiting to be replayed on Redis."),
    Figure("journal_overflows", "counter", "target", "journal_overflows",
           "Times the journal overflowed and fell back to a full-prefix invalidation."),
    Figure("replays", "counter", "target", "replays",
           "Recoveries: the journal replayed on Redis and the breaker closed."),
    Figure("stale_blocked", "counter", "target", "stale_blocked",
           "Late writes from before a recovery refused by the tombstone guard."),
)
FALLBACK = (
    Figure("fallback_entries", "gauge", "target", "memory_entries",
           "Entries in the fallback store."),
    Figure("fallback", "gauge", "target", "memory_bytes",
           "Payload bytes held by the fallback store.", "bytes"),
    Figure("fallback_evictions", "counter", "target", "memory_evictions",
           "Entries evicted from the fallback store to stay within its bounds."),
    Figure("fallback_reads", "counter", "target", "memory_reads",
           "Reads served by the fallback store."),
    Figure("fallback_writes", "counter", "target", "memory_writes",
           "Writes applied to the fallback store."),
    Figure("fallback_dropped_entries", "counter", "target", "entries_dropped",
           "Fallback entries dropped when Redis came back."),
)
PAYLOADS = (
    Figure("corrupt_payloads", "counter", "target", "corrupt",
           "Reads that found a payload undecodable (removed) or a key not ours (left alone)."),
)
NEAR = (  # only targets with a near cache (``near_cache=...``) have these
    Figure("near_hits", "counter", "target", "near_hits",
           "Reads served by the near cache (process memory, no I/O)."),
    Figure("near_misses", "counter", "target", "near_misses",
           "Reads of near-cached services that the near cache could not serve."),
    Figure("near_invalidations", "counter", "target", "near_invalidations",
           "Invalidation messages Redis pushed to the near cache's tracker."),
    Figure("near_flushes", "counter", "target", "near_flushes",
           "Times the near cache was emptied (coherence lost, FLUSHDB, an outage, a fork)."),
    Figure("near_evictions", "counter", "target", "near_evictions",
           "Entries evicted from the near cache to stay within its bounds."),
    Figure("near_entries", "gauge", "target", "near_entries", "Entries in the near cache."),
    Figure("near", "gauge", "target", "near_bytes",
           "Approximate bytes held by the near cache.", "bytes"),
    Figure("near_coherent", "gauge", "target", "near_coherent",
           "1 while the near cache is trusted (its tracker hears from every primary)."),
)
LOADING = (  # get_or_set / @cached under pressure (timeouts, eager refresh)
    Figure("background_loads", "counter", "target", "background_loads",
           "Loads started in the background (past a timeout, or an eager refresh)."),
    Figure("background_errors", "counter", "target", "background_errors",
           "Background loads that raised (logged, rate-limited)."),
    Figure("background_refused", "counter", "target", "background_refused",
           "Background loads refused because the per-process limit was running."),
    Figure("load_timeouts", "counter", "target", "load_timeouts",
           "Callers that stopped waiting for a load (soft_timeout or hard_timeout)."),
)
GROUPS: tuple[tuple[Figure, ...], ...] = (SERVICE, BREAKER, JOURNAL, FALLBACK, PAYLOADS, NEAR,
                                          LOADING)
FIGURES: tuple[Figure, ...] = tuple(f for group in GROUPS for f in group)
BREAKER_STATES = ("closed", "open", "draining")


@dataclass
class Reading:
    """One pass over the live services."""

    services: dict[tuple[str, str], dict[str, int]]  # (target, prefix) -> summed counters
    targets: dict[str, dict[str, Any]]  # target location -> its snapshot()
    # target -> operation -> (per-bucket counts over stats.LATENCY_BOUNDS and +Inf, sum)
    latency: dict[str, dict[str, tuple[list[int], float]]] = field(default_factory=dict)


def read() -> Reading:
    """Read every live service's counters and its target's snapshot (no Redis I/O).

    A service whose target was never used or cannot be (an invalid REDIS_URL) is left out,
    and so is a ready-made instance (``api_cache``...) until it counts something. Targets
    are labelled by their location without secrets (``target_labels``).
    """
    services: dict[tuple[str, str], dict[str, int]] = {}
    targets: dict[str, dict[str, Any]] = {}
    latency: dict[str, dict[str, tuple[list[int], float]]] = {}
    used: list[tuple[RuntimeView, dict[str, int]]] = []
    snapshots: dict[int, tuple[RuntimeView, dict[str, Any]]] = {}
    alive: list[ServiceCore] = registry.live_services()
    for svc in alive:
        view = runtime_view(svc)
        try:
            if not view.attached:
                continue
            if view.target_id not in snapshots:
                snapshots[view.target_id] = (view, view.target_snapshot())
        except ConfigurationError:  # a ready-made service with an invalid REDIS_URL
            continue
        mine = view.counts()
        if view.ready_made and not any(mine.values()):
            continue  # a ready-made instance the application does not use
        used.append((view, mine))
    labels = target_labels({tid: (v.location, snap["location"])
                            for tid, (v, snap) in snapshots.items()})
    for tid, (view, snapshot) in snapshots.items():
        targets[labels[tid]] = snapshot
        latency[labels[tid]] = view.latency()
    for view, mine in used:
        counts = services.setdefault((labels[view.target_id], view.prefix), dict.fromkeys(
            (f.key for f in FIGURES if f.scope == "service"), 0))
        for name, n in mine.items():
            if name in counts:
                counts[name] += n
    return Reading(services, targets, latency)


def target_labels(described: dict[int, tuple[Location, str]]) -> dict[int, str]:
    """A distinct label per target: its location without secrets, and where two targets
    share that (the same Redis, other credentials: a wrong password beside the right one)
    a keyed fingerprint of their credentials after it, so that neither's figures hide the
    other's (a ``#n`` after that for targets that differ in nothing shown)."""
    count: dict[str, int] = {}
    for _, where in described.values():
        count[where] = count.get(where, 0) + 1
    labels: dict[int, str] = {}
    taken: set[str] = set()
    for tid in sorted(described, key=lambda t: described[t][1]):
        location, where = described[tid]
        label = where
        if count[where] > 1:
            fingerprint = credentials_fingerprint(location, None)
            label = f"{where} (credentials {fingerprint[:8]})" if fingerprint else where
            base, n = label, 2
            while label in taken:
                label, n = f"{base} #{n}", n + 1
        taken.add(label)
        labels[tid] = label
    return labels


_cache: tuple[float, Reading] | None = None
_cache_lock = threading.Lock()


def read_cached(max_age: float = 0.05) -> Reading:
    """``read()``, shared by the callbacks of one collection (OTel calls one per instrument)."""
    global _cache
    with _cache_lock:
        now = time.monotonic()
        if _cache is None or now - _cache[0] > max_age:
            _cache = (now, read())
        return _cache[1]
