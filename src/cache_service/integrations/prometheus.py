"""Prometheus metrics for every live service of this process (``pip install
cache_service[prometheus]``).

::

    from cache_service.integrations import prometheus
    prometheus.register()            # the global registry (prometheus_client.REGISTRY)

Then expose the registry as usual (``prometheus_client.make_asgi_app()``, ``start_http_server``;
see ``examples/metrics_app.py``). A scrape reads counters and the targets' breaker, journal
and fallback-store figures; it never touches Redis, so it answers during an outage too.

Metrics (labels: ``target`` = the Redis location without secrets, ``prefix`` = the service
namespace): ``cache_service_{hits,misses,sets,deletes,invalidations}_total{target,prefix}``;
per target ``cache_service_breaker_state{target,state}`` (1 for the current state of
``closed``/``open``/``draining``, else 0), ``cache_service_breaker_transitions_total{target,to}``,
``cache_service_journal_entries``, ``cache_service_journal_overflows_total``,
``cache_service_replays_total``, ``cache_service_stale_blocked_total``,
``cache_service_fallback_entries``, ``cache_service_fallback_bytes``,
``cache_service_fallback_{evictions,reads,writes,dropped_entries}_total``,
``cache_service_errors_total``, ``cache_service_reply_errors_total``,
``cache_service_corrupt_payloads_total``,
``cache_service_background_{loads,errors,refused}_total``,
``cache_service_load_timeouts_total`` and
``cache_service_misconfigured{target,reason}`` (1 while Redis refuses us for a reason only a
setting can fix; ``reason`` says which). The list is in the docs, Operations > Metrics reference.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cache_service.integrations.figures import BREAKER_STATES, FIGURES, Figure, Reading, read
from cache_service.stats import LATENCY_BOUNDS

__all__ = ["CacheServiceCollector", "register"]

NAMESPACE = "cache_service"
# breaker_opened / breaker_closed become one counter with a ``to`` label
_TRANSITIONS = {"breaker_opened": "open", "breaker_closed": "closed"}


def metric_name(figure: Figure) -> str:
    """The Prometheus name of ``figure`` (``_total`` is added by the counter family)."""
    unit = f"_{figure.unit}" if figure.unit else ""
    return f"{NAMESPACE}_{figure.name}{unit}"


class CacheServiceCollector(Collector):
    """Exports the figures of ``figures.FIGURES`` for every live service."""

    def collect(self) -> Iterator[Metric]:
        reading = read()
        transitions = CounterMetricFamily(
            f"{NAMESPACE}_breaker_transitions",
            "Breaker transitions: to=open when an outage began, to=closed when Redis was back.",
            labels=["target", "to"])
        for figure in FIGURES:
            if figure.name in _TRANSITIONS:
                for target, snap in reading.targets.items():
                    transitions.add_metric([target, _TRANSITIONS[figure.name]],
                                           snap[figure.key])
                continue
            yield self._family(figure, reading)
        yield transitions
        state = GaugeMetricFamily(f"{NAMESPACE}_breaker_state",
                                  "Breaker state: 1 for the current one (closed: calls use "
                                  "Redis; open: the fallback store; draining: replaying).",
                                  labels=["target", "state"])
        misconfigured = GaugeMetricFamily(
            f"{NAMESPACE}_misconfigured",
            "1 while Redis refuses this process for a reason only a setting can fix "
            "(reason says which), else 0.", labels=["target", "reason"])
        for target, snap in reading.targets.items():
            for name in BREAKER_STATES:
                state.add_metric([target, name], 1.0 if snap["breaker_state"] == name else 0.0)
            reason = snap["misconfiguration"]
            misconfigured.add_metric([target, reason or ""], 0.0 if reason is None else 1.0)
        yield state
        yield misconfigured
        yield self._latency(reading)

    def describe(self) -> Iterable[Metric]:
        return []  # figures are read at scrape time only (a registration never reads them)

    @staticmethod
    def _latency(reading: Reading) -> Metric:
        family = HistogramMetricFamily(
            f"{NAMESPACE}_call_duration_seconds",
            "Seconds per call, per operation (get: Redis round trips only; reads served by the "
            "memory store are not timed).", labels=["target", "operation"])
        for target, ops in sorted(reading.latency.items()):
            for op, (counts, total) in sorted(ops.items()):
                running = 0
                buckets: list[tuple[str, float]] = []
                for bound, n in zip((*map(repr, LATENCY_BOUNDS), "+Inf"), counts, strict=True):
                    running += n
                    buckets.append((bound, running))
                family.add_metric([target, op], buckets, total)
        return family

    @staticmethod
    def _family(figure: Figure, reading: Reading) -> Metric:
        name = metric_name(figure)
        family: CounterMetricFamily | GaugeMetricFamily
        if figure.scope == "service":
            labels = ["target", "prefix"]
            family = (CounterMetricFamily if figure.kind == "counter" else GaugeMetricFamily)(
                name, figure.help, labels=labels)
            for (target, prefix), counts in sorted(reading.services.items()):
                family.add_metric([target, prefix], counts[figure.key])
            return family
        family = (CounterMetricFamily if figure.kind == "counter" else GaugeMetricFamily)(
            name, figure.help, labels=["target"])
        for target, snap in sorted(reading.targets.items()):
            if figure.key in snap:
                family.add_metric([target], int(snap[figure.key]))
        return family


_registered: weakref.WeakKeyDictionary[CollectorRegistry, CacheServiceCollector] = (
    weakref.WeakKeyDictionary())


def register(registry: CollectorRegistry | None = None) -> CacheServiceCollector:
    """Register the collector with ``registry`` (default: prometheus_client's global one);
    once per registry (a second call returns the first collector)."""
    target = REGISTRY if registry is None else registry
    collector = _registered.get(target)
    if collector is None:
        collector = _registered[target] = CacheServiceCollector()
        target.register(collector)
    return collector
