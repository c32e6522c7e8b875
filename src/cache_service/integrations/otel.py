"""OpenTelemetry metrics for every live service of this process (``pip install
cache_service[otel]``).

::

    from cache_service.integrations import otel
    otel.instrument()                # the global MeterProvider (opentelemetry.metrics)

The figures are those of the Prometheus exporter (``figures.FIGURES``) as observable
instruments of the meter ``cache_service``, named the OTel way: dotted names without a
``_total`` suffix (``cache_service.hits``, ``cache_service.fallback.size``), UCUM units
(``By``; ``{hit}``-style annotations for counts), and attributes ``cache_service.target``
(the Redis location without secrets) and ``cache_service.prefix``. There is no semantic
convention for caches, so these follow the general naming rules. The breaker state is an
observable gauge ``cache_service.breaker.state`` (1 for the current state, per value of the
attribute ``cache_service.breaker.state``); transitions are ``cache_service.breaker.transitions``
with attribute ``cache_service.breaker.to``. Observing reads counters; it never touches Redis.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from cache_service.integrations.figures import BREAKER_STATES, FIGURES, Figure, read_cached

__all__ = ["instrument", "otel_name"]

TARGET, PREFIX = "cache_service.target", "cache_service.prefix"
_GROUPS = ("background", "breaker", "fallback", "journal", "near")
_TRANSITIONS = {"breaker_opened": "open", "breaker_closed": "closed"}
_instrumented: weakref.WeakKeyDictionary[MeterProvider, Meter] = weakref.WeakKeyDictionary()
_global: list[Meter] = []


def otel_name(figure: Figure) -> str:
    """``fallback_entries`` -> ``cache_service.fallback.entries``; bytes -> ``.size``."""
    name = figure.name
    for group in _GROUPS:
        if name == group:
            name = f"{group}.size" if figure.unit == "bytes" else group
        elif name.startswith(group + "_"):
            name = f"{group}.{name[len(group) + 1:]}"
    return f"cache_service.{name}"


def _unit(figure: Figure) -> str:
    if figure.unit == "bytes":
        return "By"
    if figure.name.endswith("_coherent"):  # 0 or 1
        return "1"
    word = figure.name.rsplit("_", 1)[-1]
    singular = {"entries": "entry", "misses": "miss", "hits": "hit",
                "refused": "load"}.get(word, word.rstrip("s"))
    return "{" + singular + "}"


def _observe(figure: Figure) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        reading = read_cached()
        if figure.scope == "service":
            return [Observation(counts[figure.key], {TARGET: target, PREFIX: prefix})
                    for (target, prefix), counts in reading.services.items()]
        return [Observation(int(snap[figure.key]), {TARGET: target})
                for target, snap in reading.targets.items() if figure.key in snap]
    return callback


def _transitions(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(snap[key], {TARGET: target, "cache_service.breaker.to": to})
            for target, snap in read_cached().targets.items()
            for key, to in _TRANSITIONS.items()]


def _state(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(1 if snap["breaker_state"] == state else 0,
                        {TARGET: target, "cache_service.breaker.state": state})
            for target, snap in read_cached().targets.items() for state in BREAKER_STATES]


def _misconfigured(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(0 if snap["misconfiguration"] is None else 1,
                        {TARGET: target, "cache_service.reason": snap["misconfiguration"] or ""})
            for target, snap in read_cached().targets.items()]


def instrument(meter_provider: MeterProvider | None = None) -> Meter:
    """Create the observable instruments on ``meter_provider`` (default: the global one);
    once per provider (a second call returns the first meter)."""
    known = _global if meter_provider is None else None
    if known:
        return known[0]
    if meter_provider is not None and meter_provider in _instrumented:
        return _instrumented[meter_provider]
    meter = (metrics.get_meter("cache_service") if meter_provider is None
             else meter_provider.get_meter("cache_service"))
    for figure in FIGURES:
        if figure.name in _TRANSITIONS:
            continue
        make = (meter.create_observable_counter if figure.kind == "counter"
                else meter.create_observable_gauge)
        make(otel_name(figure), [_observe(figure)], unit=_unit(figure), description=figure.help)
    meter.create_observable_counter(
        "cache_service.breaker.transitions", [_transitions], unit="{transition}",
        description="Breaker transitions: to=open when an outage began, to=closed when back.")
    meter.create_observable_gauge(
        "cache_service.breaker.state", [_state], unit="1",
        description="1 for the breaker's current state (closed, open, draining), else 0.")
    meter.create_observable_gauge(
        "cache_service.misconfigured", [_misconfigured], unit="1",
        description="1 while Redis refuses this process for a reason only a setting can fix.")
    if meter_provider is None:
        _global.append(meter)
    else:
        _instrumented[meter_provider] = meter
    return meter
