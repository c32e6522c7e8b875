"""Metrics: the Prometheus collector and the OTel instruments read the figures of stats(),
after known operations and across a real outage (ChaosProxy), and the example app's /metrics
is scraped over HTTP by a real client."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from cache_service import CacheService, registry
from cache_service.integrations import otel, prometheus

from .helpers import eventually, unique
from .servers import ChaosProxy, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
FAST = {"socket_timeout": 0.2, "connect_timeout": 0.2, "breaker_min_backoff": 0.05,
        "breaker_max_backoff": 0.2}


@pytest.fixture
def reg() -> CollectorRegistry:
    r = CollectorRegistry()
    prometheus.register(r)
    return r


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def test_register_is_idempotent_and_defaults_to_the_global_registry() -> None:
    r = CollectorRegistry()
    assert prometheus.register(r) is prometheus.register(r)
    from prometheus_client import REGISTRY
    collector = prometheus.register()
    assert prometheus.register(REGISTRY) is collector


def test_known_operations(reg: CollectorRegistry, redis_server: RedisServer) -> None:
    prefix = unique("m")
    svc = CacheService(prefix, url=redis_server.url)
    twin = CacheService(prefix, url=redis_server.url)  # same prefix: one cache, summed
    try:
        for k in "abc":
            svc.set(k, k)
        assert [svc.get("a"), twin.get("b"), svc.get("zz")] == ["a", "b", None]
        assert svc.delete("a", "b") == 2
        twin.invalidate_pattern("*")
        where = {"target": svc.location, "prefix": prefix}
        assert value(reg, "cache_service_hits_total", **where) == 2
        assert value(reg, "cache_service_misses_total", **where) == 1
        assert value(reg, "cache_service_sets_total", **where) == 3
        assert value(reg, "cache_service_deletes_total", **where) == 2
        assert value(reg, "cache_service_invalidations_total", **where) == 1
        at = {"target": svc.location}
        assert value(reg, "cache_service_breaker_state", state="closed", **at) == 1
        assert value(reg, "cache_service_breaker_state", state="open", **at) == 0
        assert value(reg, "cache_service_misconfigured", reason="", **at) == 0
        # a corrupt payload is counted and removed
        with redis_server.client() as raw:
            raw.set(svc.full_key("bad"), b"\xcc\x01garbage-without-a-valid-header")
        assert svc.get("bad") is None
        assert value(reg, "cache_service_corrupt_payloads_total", **at) == \
            svc.stats()["target"]["corrupt"]
    finally:
        svc.close()


def test_across_an_outage(reg: CollectorRegistry, chaos_proxy: ChaosProxy) -> None:
    prefix = unique("o")
    svc = CacheService(prefix, url=chaos_proxy.url, **FAST)
    at = {"target": svc.location}
    try:
        svc.set("k", 1)
        assert svc.get("k") == 1
        chaos_proxy.cut()
        assert svc.get("k") is None  # the fallback store starts empty
        svc.set("k", 2)  # journaled
        assert svc.get("k") == 2
        assert value(reg, "cache_service_breaker_state", state="open", **at) == 1
        assert value(reg, "cache_service_breaker_transitions_total", to="open", **at) == 1
        assert value(reg, "cache_service_errors_total", **at) >= 1  # type: ignore[operator]
        assert value(reg, "cache_service_journal_entries", **at) == 1
        assert value(reg, "cache_service_fallback_entries", **at) == 1
        assert value(reg, "cache_service_fallback_bytes", **at) > 0  # type: ignore[operator]
        assert value(reg, "cache_service_fallback_writes_total", **at) >= 1  # type: ignore[operator]
        assert value(reg, "cache_service_fallback_reads_total", **at) == 2
        chaos_proxy.hang()  # a scrape never waits for Redis, even a hung one
        started = time.monotonic()
        for _ in range(20):
            value(reg, "cache_service_hits_total", target=svc.location, prefix=prefix)
        assert time.monotonic() - started < 1.0
        chaos_proxy.heal()
        eventually(lambda: value(reg, "cache_service_breaker_state", state="closed", **at) == 1,
                   timeout=10)
        assert value(reg, "cache_service_breaker_transitions_total", to="closed", **at) == 1
        assert value(reg, "cache_service_replays_total", **at) == 1
        assert value(reg, "cache_service_journal_entries", **at) == 0
        assert value(reg, "cache_service_fallback_dropped_entries_total", **at) == 1
        assert svc.get("k") is None  # the journal removed the pre-outage value on Redis
        where = {"target": svc.location, "prefix": prefix}
        assert value(reg, "cache_service_hits_total", **where) == 2
        assert value(reg, "cache_service_misses_total", **where) == 2
        assert value(reg, "cache_service_sets_total", **where) == 2
    finally:
        svc.close()


def test_registry_holds_services_weakly() -> None:
    svc = CacheService(unique("weak"), url="memory://weak")
    assert svc in registry.live_services()
    name = svc.prefix
    del svc
    gc.collect()
    assert name not in {s.prefix for s in registry.live_services()}


def test_unused_services_are_not_exported(reg: CollectorRegistry) -> None:
    CacheService(unique("unused"), url="redis://127.0.0.1:1/0")  # never used: never attached
    text = "\n".join(str(m) for m in reg.collect())
    assert "redis://127.0.0.1:1/0" not in text


def _otel_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = [(dict(p.attributes or {}), p.value)  # type: ignore[union-attr]
                                    for p in metric.data.data_points]
    return out


def _point(points: dict[str, list[tuple[dict[str, Any], Any]]], name: str,
           **attributes: str) -> Any:
    found = [v for attrs, v in points[name] if all(attrs.get(k) == a for k, a in
                                                   attributes.items())]
    assert len(found) == 1, (name, attributes, points[name])
    return found[0]


def test_otel_in_memory_reader(chaos_proxy: ChaosProxy) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    assert otel.instrument(provider) is otel.instrument(provider)
    prefix = unique("otel")
    svc = CacheService(prefix, url=chaos_proxy.url, **FAST)
    where = {otel.PREFIX: prefix, otel.TARGET: svc.location}
    at = {otel.TARGET: svc.location}
    try:
        svc.set("a", 1)
        svc.get("a")
        svc.get("b")
        points = _otel_points(reader)
        assert _point(points, "cache_service.hits", **where) == 1
        assert _point(points, "cache_service.misses", **where) == 1
        assert _point(points, "cache_service.sets", **where) == 1
        assert _point(points, "cache_service.breaker.state", **at,
                      **{"cache_service.breaker.state": "closed"}) == 1
        chaos_proxy.cut()
        svc.set("a", 2)
        time.sleep(0.06)  # past the shared reading's lifetime
        points = _otel_points(reader)
        assert _point(points, "cache_service.breaker.state", **at,
                      **{"cache_service.breaker.state": "open"}) == 1
        assert _point(points, "cache_service.breaker.transitions", **at,
                      **{"cache_service.breaker.to": "open"}) == 1
        assert _point(points, "cache_service.journal.entries", **at) == 1
        assert _point(points, "cache_service.fallback.size", **at) > 0
        chaos_proxy.heal()
        eventually(lambda: not svc.stats()["target"]["journal_size"], timeout=10)
        time.sleep(0.06)
        points = _otel_points(reader)
        assert _point(points, "cache_service.replays", **at) == 1
        units = {m.name: m.unit for rm in reader.get_metrics_data().resource_metrics  # type: ignore[union-attr]
                 for sm in rm.scope_metrics for m in sm.metrics}
        assert units["cache_service.fallback.size"] == "By"
        assert units["cache_service.hits"] == "{hit}"
    finally:
        svc.close()
        provider.shutdown()


# -- the example app, scraped over HTTP ----------------------------------------------------------
@pytest.fixture
def metrics_app(chaos_proxy: ChaosProxy) -> Iterator[str]:
    """examples/metrics_app.py under uvicorn on Redis through the proxy; its base URL."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": chaos_proxy.url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.metrics_app:app", "--host", "127.0.0.1",
         "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/metrics", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, (name, labels)
    return found[0]


def test_example_app_scraped_over_http(metrics_app: str, chaos_proxy: ChaosProxy) -> None:
    with httpx.Client(base_url=metrics_app, timeout=5) as client:
        assert client.get("/items/1").json() == {"id": 1, "name": "item 1"}  # miss, loaded
        assert client.get("/items/1").json()["id"] == 1  # hit
        assert client.delete("/items/1").json() == {"deleted": 1}
        got = scrape(metrics_app)
        shop = {"prefix": "shop", "target": chaos_proxy.url}
        assert sample(got, "cache_service_hits_total", **shop) == 1
        assert sample(got, "cache_service_misses_total", **shop) == 1
        assert sample(got, "cache_service_sets_total", **shop) == 1
        assert sample(got, "cache_service_deletes_total", **shop) == 1
        assert sample(got, "cache_service_breaker_state", state="closed") == 1

        chaos_proxy.cut()
        assert client.get("/items/2").json()["id"] == 2  # served: loaded, kept in memory
        got = scrape(metrics_app)
        assert sample(got, "cache_service_breaker_state", state="open") == 1
        assert sample(got, "cache_service_breaker_transitions_total", to="open") == 1
        assert sample(got, "cache_service_journal_entries") == 1
        assert sample(got, "cache_service_fallback_entries") == 1

        chaos_proxy.heal()
        eventually(lambda: sample(scrape(metrics_app), "cache_service_breaker_state",
                                  state="closed") == 1, timeout=15, interval=0.2)
        got = scrape(metrics_app)
        assert sample(got, "cache_service_replays_total") == 1
        assert sample(got, "cache_service_breaker_transitions_total", to="closed") == 1
        assert sample(got, "cache_service_journal_entries") == 0


# -- cache-service stats: the CLI reads the app's /metrics -----------------------------------------
CLI = str(Path(sys.executable).with_name("cache-service"))


def test_stats_command_reads_the_app(metrics_app: str, chaos_proxy: ChaosProxy) -> None:
    from click.testing import CliRunner

    from cache_service.cli import main

    with httpx.Client(base_url=metrics_app, timeout=5) as client:
        for _ in range(3):
            client.get("/items/7")
    url = f"{metrics_app}/metrics"
    out = subprocess.run([CLI, "stats", "--metrics-url", url], capture_output=True, text=True,
                         timeout=60, check=False,
                         env={**os.environ, "REDIS_URL": chaos_proxy.url, "COLUMNS": "120"})
    assert out.returncode == 0, out.stderr
    assert f"target {chaos_proxy.url}" in out.stdout
    assert "Redis from this shell" in out.stdout
    assert "reachable" in out.stdout
    shop = next(line for line in out.stdout.splitlines() if "│ shop" in line)
    assert [c.strip() for c in shop.split("│")[2:5]] == ["2", "1", "1"]  # hits, misses, sets
    assert "66.7%" in shop

    chaos_proxy.cut()
    with httpx.Client(base_url=metrics_app, timeout=5) as client:
        client.get("/items/8")
    watched = CliRunner().invoke(main, ["stats", "--watch", "--count", "2", "--interval", "0.1",
                                        "--metrics-url", url, "--redis-url", chaos_proxy.url],
                                 env={"COLUMNS": "120"})
    assert watched.exit_code == 0, watched.output
    assert watched.stdout.count("cache_service stats from") == 2
    assert "│ open" in watched.stdout
    assert "UNREACHABLE" in watched.stdout
    assert "hits/s" in watched.stdout


def test_stats_command_errors() -> None:
    port = free_port()
    down = subprocess.run([CLI, "stats", "--metrics-url", f"http://127.0.0.1:{port}/metrics"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert down.returncode == 1
    assert down.stdout == ""
    assert down.stderr.startswith(f"error: cannot read http://127.0.0.1:{port}/metrics: ")
    assert len(down.stderr.splitlines()) == 1
    bad = subprocess.run([CLI, "stats", "--metrics-url", "ftp://x"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert (bad.returncode, len(bad.stderr.splitlines())) == (2, 1)
    missing = subprocess.run([CLI, "stats"], capture_output=True, text=True, timeout=60,
                             check=False, env={k: v for k, v in os.environ.items()
                                               if k != "CACHE_SERVICE_METRICS_URL"})
    assert missing.returncode == 2
    assert "--metrics-url" in missing.stderr


def test_latency_histogram(reg: CollectorRegistry, chaos_proxy: ChaosProxy) -> None:
    prefix = unique("lat")
    svc = CacheService(prefix, url=chaos_proxy.url, **FAST)
    name = "cache_service_call_duration_seconds"

    def count(operation: str) -> float | None:
        return value(reg, f"{name}_count", target=svc.location, operation=operation)

    try:
        svc.set("a", 1)
        for _ in range(32):  # Redis hits of CacheService.get: 1 in 16 timed, counted 16 times
            svc.get("a")
        svc.delete("a")
        assert (count("get"), count("set"), count("delete")) == (32, 1, 1)
        total = value(reg, f"{name}_sum", target=svc.location, operation="get")
        assert total is not None
        assert 0 < total < 32
        buckets = [s for m in reg.collect() if m.name == name for s in m.samples
                   if s.name.endswith("_bucket") and s.labels["operation"] == "get"
                   and s.labels["target"] == svc.location]
        assert len(buckets) == 20  # 1 µs .. 1 s, then +Inf
        assert buckets[0].labels["le"] == "1e-06"
        assert buckets[-2].labels["le"] == "1.0"
        assert [b.value for b in buckets] == sorted(b.value for b in buckets)
        assert buckets[-1].value == 32
        chaos_proxy.cut()
        for _ in range(3):
            svc.get("a")
        # the first get met the cut and fell back (timed); reads from memory are not timed
        assert count("get") == 33
    finally:
        svc.close()


def test_ready_made_instances_are_exported_once_used(reg: CollectorRegistry,
                                                     redis_server: RedisServer) -> None:
    prefix = unique("ready")
    ready = CacheService(prefix, url=redis_server.url, _defer_location_error=True)
    CacheService(unique("other"), url=redis_server.url).get("x")  # the target is in use
    where = {"target": ready.location, "prefix": prefix}
    assert value(reg, "cache_service_hits_total", **where) is None
    ready.get("absent")
    assert value(reg, "cache_service_misses_total", **where) == 1
    assert value(reg, "cache_service_hits_total", **where) == 0


def test_near_cache_figures(reg: CollectorRegistry, chaos_proxy: ChaosProxy) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    otel.instrument(provider)
    svc = CacheService(unique("nearm"), url=chaos_proxy.url, near_cache=True, **FAST)
    plain = CacheService(unique("plain"), url=chaos_proxy.url.replace("/0", "/1"), **FAST)
    at = {"target": svc.location}
    try:
        svc.set("a", {"v": 1})
        plain.set("a", 1)

        def near_hit() -> bool:
            svc.get("a")
            return bool(value(reg, "cache_service_near_hits_total", **at))

        eventually(near_hit, timeout=10)
        assert value(reg, "cache_service_near_entries", **at) == 1
        assert (value(reg, "cache_service_near_bytes", **at) or 0) > 0
        assert value(reg, "cache_service_near_coherent", **at) == 1
        assert (value(reg, "cache_service_near_misses_total", **at) or 0) >= 1
        # a target without a near cache exports none of these
        assert value(reg, "cache_service_near_entries", target=plain.location) is None
        time.sleep(0.06)
        points = _otel_points(reader)
        assert _point(points, "cache_service.near.hits", **{otel.TARGET: svc.location}) >= 1
        chaos_proxy.cut()
        assert svc.get("a") is None  # the breaker opens; the near cache is emptied
        eventually(lambda: value(reg, "cache_service_near_coherent", **at) == 0, timeout=5)
        assert value(reg, "cache_service_near_entries", **at) == 0
        assert (value(reg, "cache_service_near_flushes_total", **at) or 0) >= 1
    finally:
        chaos_proxy.heal()
        svc.close()
        plain.close()
        provider.shutdown()


def test_stats_view_shows_the_near_cache(reg: CollectorRegistry,
                                         fresh_redis_server: RedisServer) -> None:
    from prometheus_client import generate_latest
    from rich.console import Console

    from cache_service.cli.watch import render

    svc = CacheService(unique("nearv"), url=fresh_redis_server.url, near_cache=True)
    svc.set("a", 1)

    def hit() -> bool:
        svc.get("a")
        return bool(svc.stats()["target"]["near_hits"])

    eventually(hit, timeout=10)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(generate_latest(reg).decode())
               for s in family.samples if s.name.startswith("cache_service_")}
    console = Console(width=400, record=True)
    console.print(render(samples, None, 0.0, "http://app/metrics", None))
    text = console.export_text()
    assert "near cache" in text
    assert any((svc.location in line and "coherent" in line) or "│ coherent" in line
               for line in text.splitlines()), text
    svc.close()
