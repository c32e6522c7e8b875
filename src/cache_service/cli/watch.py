"""``stats``: a running app's figures, read from its Prometheus endpoint.

The CLI reaches the app the way Prometheus does: it GETs the ``/metrics`` URL the app exposes
with ``integrations.prometheus.register()`` (``--metrics-url`` or
``$CACHE_SERVICE_METRICS_URL``) and parses the text format. It never needs the app's code,
sees exactly what Grafana would, and works while Redis is down (a scrape never touches
Redis). ``--redis-url`` adds whether Redis answers from where the CLI runs.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime
from typing import Any

import click
import redis
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cache_service._runtime.view import runtime_view

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover - the [prometheus] extra is missing
    text_string_to_metric_families = None  # type: ignore[assignment]

from cache_service.cli._common import Connection, fail, one_line, quiet_library, service

__all__ = ["stats"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
STATE_STYLE = {"closed": "green", "open": "bold red", "draining": "yellow"}
PER_PREFIX = ("hits", "misses", "sets", "deletes", "invalidations")


def scrape(url: str, timeout: float) -> Samples:
    """The samples of the text exposition at ``url``; raises OSError/ValueError."""
    if text_string_to_metric_families is None:  # pragma: no cover - no [prometheus] extra
        fail("stats needs prometheus-client: pip install 'cache_service[prometheus]'")
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        text = reply.read().decode("utf-8", "replace")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("cache_service_")}


def _by(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for (n, labels), v in samples.items():
        if n == name:
            d = dict(labels)
            out[tuple(d.get(k, "") for k in keys)] = v
    return out


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def render(samples: Samples, previous: Samples | None, elapsed: float, url: str,
           redis_line: str | None) -> Group:
    """The view: one table of targets (breaker, journal, fallback) and one of prefixes."""
    when = datetime.now().strftime("%H:%M:%S")
    parts: list[Any] = [Text(f"cache_service stats from {url} at {when}", style="bold")]
    if redis_line:
        parts.append(Text(redis_line))
    states: dict[str, str] = {}
    for (target, state), v in _by(samples, "cache_service_breaker_state", "target",
                                  "state").items():
        if v:
            states[target] = state
    per_target = {name: _by(samples, f"cache_service_{name}", "target") for name in (
        "errors_total", "journal_entries", "replays_total", "fallback_entries",
        "fallback_bytes", "fallback_evictions_total")}
    moves = _by(samples, "cache_service_breaker_transitions_total", "target", "to")
    one_target = len(states) <= 1
    columns = ("breaker", "opened", "closed", "errors", "journal", "replays", "fallback",
               "fallback size", "evicted")
    targets = Table(*(() if one_target else ("target",)), *columns, title_justify="left",
                    title=f"target {next(iter(states))}" if one_target and states else None)
    problems = {t: r for (t, r), v in _by(samples, "cache_service_misconfigured", "target",
                                           "reason").items() if v}
    for target in sorted(states):
        state = states[target]
        cell = Text(state, style=STATE_STYLE.get(state, ""))
        if target in problems:
            cell.append(f" ({problems[target]})", style="red")
        lead = () if one_target else (target,)
        targets.add_row(*lead, cell, *(f"{moves.get((target, to), 0):.0f}"
                                       for to in ("open", "closed")),
                        *(f"{per_target[n].get((target,), 0):.0f}" for n in (
                            "errors_total", "journal_entries", "replays_total",
                            "fallback_entries")),
                        _bytes(per_target["fallback_bytes"].get((target,), 0)),
                        f"{per_target['fallback_evictions_total'].get((target,), 0):.0f}")
    parts.append(targets)
    near = _near_table(samples, one_target)
    if near is not None:
        parts.append(near)
    prefixes = Table(*(() if one_target else ("target",)), "prefix", *PER_PREFIX, "hit ratio",
                     "hits/s", "misses/s")
    counts = {name: _by(samples, f"cache_service_{name}_total", "target", "prefix")
              for name in PER_PREFIX}
    before = {name: _by(previous, f"cache_service_{name}_total", "target", "prefix")
              for name in ("hits", "misses")} if previous else None
    rows: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    for name, values in counts.items():
        for where, v in values.items():
            rows[where][name] = v
    for where in sorted(rows):
        row = rows[where]
        reads = row.get("hits", 0) + row.get("misses", 0)
        ratio = f"{row.get('hits', 0) / reads:.1%}" if reads else "-"
        rates = ["-", "-"]
        if before is not None and elapsed > 0:
            rates = [f"{(row.get(n, 0) - before[n].get(where, 0)) / elapsed:.1f}"
                     for n in ("hits", "misses")]
        prefixes.add_row(*(where[1:] if one_target else where),
                         *(f"{row.get(n, 0):.0f}" for n in PER_PREFIX), ratio, *rates)
    parts.append(prefixes)
    return Group(*parts)


def _near_table(samples: Samples, one_target: bool) -> Table | None:
    """The near caches' figures, per target that has one (None: no target has)."""
    coherent = _by(samples, "cache_service_near_coherent", "target")
    if not coherent:
        return None
    names = ("near_entries", "near_bytes", "near_hits_total", "near_misses_total",
             "near_invalidations_total", "near_flushes_total")
    figures = {name: _by(samples, f"cache_service_{name}", "target") for name in names}
    table = Table(*(() if one_target else ("target",)), "near cache", "entries", "size",
                  "hits", "misses", "invalidations", "flushes", title_justify="left")
    for (target,), trusted in sorted(coherent.items()):
        cell = Text("coherent", style="green") if trusted else Text("bypassed", style="yellow")
        values = [figures[n].get((target,), 0) for n in names]
        table.add_row(*(() if one_target else (target,)), cell, f"{values[0]:.0f}",
                      _bytes(values[1]), *(f"{v:.0f}" for v in values[2:]))
    return table


def _redis_line(conn: Connection | None) -> str | None:
    if conn is None:
        return None
    started = time.perf_counter()
    try:
        with quiet_library():
            conn.ping()
    except (redis.RedisError, OSError) as exc:
        return f"Redis from this shell ({conn.location}): UNREACHABLE - {conn.describe(exc)}"
    return (f"Redis from this shell ({conn.location}): reachable, "
            f"{(time.perf_counter() - started) * 1000:.1f} ms")


@click.command()
@click.option("--metrics-url", envvar="CACHE_SERVICE_METRICS_URL", required=True,
              help="The app's Prometheus endpoint, e.g. http://localhost:8000/metrics "
                   "(or $CACHE_SERVICE_METRICS_URL).")
@click.option("--redis-url", default=None,
              help="Also show whether this Redis answers from here ($REDIS_URL if set).")
@click.option("--watch", "-w", is_flag=True, help="Refresh until interrupted (Ctrl-C).")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds between refreshes.")
@click.option("--count", default=0, type=click.IntRange(0),
              help="With --watch: stop after this many refreshes (0: never).")
@click.option("--timeout", default=2.0, show_default=True, type=click.FloatRange(0.01, 60),
              help="Seconds to wait for the endpoint (and for Redis).")
def stats(metrics_url: str, redis_url: str | None, watch: bool, interval: float, count: int,
          timeout: float) -> None:
    """Show a running app's cache figures (hits, misses, breaker, journal, fallback store)
    from its Prometheus endpoint; --watch keeps a live view through an outage."""
    if not metrics_url.startswith(("http://", "https://")):
        fail(f"--metrics-url must be an http(s) URL, got {one_line(metrics_url)!r}", 2)
    conn = None
    if redis_url is not None or os.environ.get("REDIS_URL"):
        conn = _PingOnly(redis_url, timeout)
    console = Console(highlight=False)
    if not watch:
        try:
            samples = scrape(metrics_url, timeout)
        except (OSError, ValueError) as exc:
            fail(f"cannot read {metrics_url}: {one_line(str(exc))}")
        console.print(render(samples, None, 0, metrics_url, _redis_line(conn)))
        return
    frames = 0
    previous: Samples | None = None
    last = time.monotonic()
    live = console.is_terminal and sys.stdout.isatty()
    view = Live(console=console, auto_refresh=False) if live else None
    try:
        if view is not None:
            view.start()
        while True:
            now = time.monotonic()
            try:
                samples = scrape(metrics_url, timeout)
                frame: Any = render(samples, previous, now - last, metrics_url,
                                    _redis_line(conn))
                previous, last = samples, now
            except (OSError, ValueError) as exc:
                frame = Text(f"cannot read {metrics_url}: {one_line(str(exc))} (retrying)",
                             style="red")
            if view is not None:
                view.update(frame, refresh=True)
            else:
                console.print(frame)
                console.print()
            frames += 1
            if count and frames >= count:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        if view is not None:
            view.stop()


class _PingOnly(Connection):
    """A connection that may be down: only pings (never fails the command)."""

    def __init__(self, redis_url: str | None, timeout: float) -> None:
        self.svc = service(redis_url, timeout=timeout)
        self.view = runtime_view(self.svc)
        self.location = self.svc.location
        self.kind = self.view.location.kind
        self.client = self.view.driver.sync_client()
