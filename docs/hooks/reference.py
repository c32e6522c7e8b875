"""mkdocs hook: the reference pages' tables and the benchmark charts, made from the code at build.

A page asks for a table with a marker line ``<!-- generated: NAME -->``. The tables are read from
the code (``CacheService``'s signature, the environment variables ``src/`` reads, the exporters'
``figures.GROUPS``, the click commands), so they cannot drift: an option, a variable or a figure
the code has and this file cannot describe fails the build, and so does a description of one the
code no longer has.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

import click
from mkdocs.structure.files import File, Files

from cache_service import CacheService
from cache_service.cli import main
from cache_service.integrations import figures, otel, prometheus

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
import charts  # noqa: E402  (docs/hooks/charts.py, beside this file)

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)

# What each option means; names and defaults come from CacheService.__init__.
OPTIONS: dict[str, str] = {
    "prefix": "namespace: 1-64 chars of `A-Z a-z 0-9 _ . -` in segments joined by single `:` "
              "(`api`, `api:v2`)",
    "host": "Redis host; see *Where Redis is* below",
    "port": "Redis port; see *Where Redis is* below",
    "default_ttl": "seconds (int, float or `timedelta`) for `set()` without `ttl`",
    "url": "`redis://`, `rediss://` (TLS), `redis+sentinel://`, `redis+cluster://`, "
           "`unix:///path/redis.sock[?db=N]`, or `memory://[name]` (no Redis at all)",
    "db": "database number (`None`: the URL's, else 0)",
    "username": "ACL user (also in the URL: `redis://user:pass@host`); never shown in `repr()`, "
                "logs or `stats()`",
    "password": "password (also in the URL); never shown in `repr()`, logs or `stats()`",
    "ssl": "force TLS on/off (`rediss://` turns it on)",
    "ssl_ca_certs": "CA bundle for TLS (also a URL query parameter)",
    "ssl_certfile": "client certificate for TLS (also a URL query parameter)",
    "ssl_keyfile": "client key for TLS (also a URL query parameter)",
    "sentinels": "Redis Sentinel addresses `[(host, port), ...]`, see "
                 "[Sentinel and Cluster](../guides/sentinel-cluster.md)",
    "service_name": "the Sentinel service (primary) name",
    "sentinel_password": "password of the sentinels themselves",
    "cluster": "treat `host`/`url` as a Redis Cluster startup node",
    "read_from_replicas": "Sentinel/Cluster: read from replicas",
    "socket_timeout": "seconds before a Redis call counts as failed (opens the breaker)",
    "connect_timeout": "seconds before a connect counts as failed (opens the breaker)",
    "max_connections": "cap on pooled connections (`None`: one per concurrent caller)",
    "max_memory_entries": "entry bound of the fallback store (shared: oldest-written first beyond "
                          "it; per process: CLOCK, a second-chance approximation of LRU)",
    "max_memory_bytes": "byte bound of the fallback store (keys + payloads + overhead)",
    "max_value_bytes": "larger encoded values raise `ValueTooLargeError` before anything is "
                       "written",
    "breaker_min_backoff": "seconds between probes while Redis is out, at first (doubling)",
    "breaker_max_backoff": "the longest wait between probes while Redis is out",
    "journal_max_entries": "outage journal bound; past it, recovery clears the affected prefixes",
    "late_write_guard": "seconds after recovery during which late-arriving writes of ours are "
                        "checked",
    "fallback": "`\"host\"`: one fallback store shared by this host's processes; `\"process\"`: a "
                "memory store per process (see [Many processes](../concepts/many-processes.md))",
    "connection": "`\"wire\"`: our own connection layer (every location kind), or "
                  "`\"redis-py\"`: redis-py's client (standalone Redis only); `None` = "
                  "`$CACHE_SERVICE_CONNECTION`, else `\"wire\"`",
    "state_dir": "directory for host-shared state: `None` = `$CACHE_SERVICE_DIR`, else "
                 "`<tempdir>/cache_service-<uid>`; `False` = process-local state",
    "codec": "`None`: JSON; `PickleCodec(signing_key=...)` for values JSON cannot hold",
    "serializer": "`\"json\"` or `\"msgpack\"` (same exact types; extra `msgpack`), see "
                  "[Codecs](../guides/codecs.md)",
    "compression": "`\"zstd\"` (recommended; extra `zstd`), `\"lz4\"` (extra `lz4`) or "
                   "`\"zlib\"`: kept only when smaller",
    "compress_min_bytes": "bodies of at least this many bytes are compressed",
    "compression_level": "the compression library's default if `None`",
    "encryption_keys": "AES-256-GCM keys (32 bytes, or hex/base64 text; extra `encryption`): the "
                       "first encrypts, all decrypt",
    "encryption_keys_env": "the name of an environment variable holding the keys instead",
    "near_cache": "`True` or `NearCache(max_entries=10_000, max_bytes=16 MiB, max_ttl=None)`: keep "
                  "read values in process memory, coherent through `CLIENT TRACKING` (see "
                  "[Near cache](../guides/near-cache.md)); ignored for `memory://`",
    "clock": "injectable clock for the per-process memory store's TTLs (tests); "
             "`None`: `time.monotonic`",
    "wall_clock": "injectable wall clock for stale-while-revalidate freshness, which other hosts "
                  "read too (tests); `None`: `time.time`; never taken from `clock`",
}

# Environment variables; the names come from src/ (os.environ reads, *_ENV constants, click).
ENVIRONMENT: dict[str, str] = {
    "REDIS_URL": "where Redis is when a service names no `url=`, `host=` or `sentinels=`; also the "
                 "ready-made services' location and the CLI's default. An invalid value raises "
                 "`ConfigurationError` on first use, never at import",
    "CACHE_SERVICE_DIR": "the host-state directory when `state_dir=None` (default: "
                         "`<tempdir>/cache_service-<uid>`)",
    "CACHE_SERVICE_STATE_MAX_AGE": "seconds after which an unused location's state files are "
                                   "swept (default 7 days)",
    "CACHE_SERVICE_CONNECTION": "`redis-py` puts every standalone service of the process on "
                                "redis-py's client (`connection=None` only; Sentinel and Cluster "
                                "stay on our own layer, with one warning)",
    "CACHE_SERVICE_SIGNING_KEY": "the pickle signing key cachelib/Flask-Caching and dogpile.cache "
                                 "read when none is given (16+ bytes)",
    "CACHE_SERVICE_METRICS_URL": "`cache-service stats`: the app's Prometheus endpoint",
}
# names that appear in src/ but are not ours to document (examples in docstrings)
NOT_OURS = {"CACHE_SIGNING_KEY", "KEY", "VAR", "CACHE_KEY"}


def _default(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "required"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024 * 1024:
        return f"`{value:_}` ({value // (1024 * 1024)} MiB)"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000:
        return f"`{value:_}`"
    return f"`{value!r}`"


def options_table() -> str:
    params = [p for n, p in inspect.signature(CacheService.__init__).parameters.items()
              if n != "self" and not n.startswith("_")]
    names = {p.name for p in params}
    missing = sorted(names - OPTIONS.keys())
    stale = sorted(OPTIONS.keys() - names)
    if missing or stale:
        raise SystemExit(f"docs/hooks/reference.py: options undescribed {missing}, "
                         f"described but gone {stale}")
    rows = ["| option | default | meaning |", "|---|---|---|"]
    rows += [f"| `{p.name}` | {_default(p.default)} | {OPTIONS[p.name]} |" for p in params]
    return "\n".join(rows)


def environment_names() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "src" / "cache_service").rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r"os\.environ(?:\.get)?[\[(]\"([A-Z_]+)\"", text))
        found |= set(re.findall(r"^[A-Z_]*ENV[A-Z_]* = \"([A-Z_]+)\"", text, re.M))
        found |= set(re.findall(r"envvar=\"([A-Z_]+)\"", text))
    return found - NOT_OURS


def environment_table() -> str:
    names = environment_names()
    missing = sorted(names - ENVIRONMENT.keys())
    stale = sorted(ENVIRONMENT.keys() - names)
    if missing or stale:
        raise SystemExit(f"docs/hooks/reference.py: environment variables undescribed {missing}, "
                         f"described but not read by src/ {stale}")
    rows = ["| variable | meaning |", "|---|---|"]
    rows += [f"| `{name}` | {ENVIRONMENT[name]} |" for name in sorted(names)]
    return "\n".join(rows)


def prometheus_table() -> str:
    """Every family the Prometheus collector yields, read from a live collector."""
    scope = {prometheus.metric_name(f): f.scope for f in figures.FIGURES}
    service = CacheService("docs-metrics", url="memory://docs-metrics")
    service.set("k", 1)
    service.get("k")
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for family in prometheus.CacheServiceCollector().collect():
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        if not labels:
            labels = {"target", "prefix"} if scope.get(family.name) == "service" else {"target"}
        order = ["target", "prefix", "state", "to", "reason", "operation"]
        shown = ", ".join(sorted(labels, key=lambda x: order.index(x) if x in order else 99))
        name = family.name + ("_total" if family.type == "counter" else "")
        rows.append(f"| `{name}` | {family.type} | {shown} | {family.documentation} |")
    service.close()
    return "\n".join(rows)


class _Recorder:
    """A stand-in meter provider that records the instruments ``otel.instrument`` creates."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def get_meter(self, name: str) -> _Recorder:
        return self

    def create_observable_counter(self, name: str, callbacks: Any, unit: str = "",
                                  description: str = "") -> None:
        self.rows.append((name, "observable counter", unit, description))

    def create_observable_gauge(self, name: str, callbacks: Any, unit: str = "",
                                description: str = "") -> None:
        self.rows.append((name, "observable gauge", unit, description))


def otel_table() -> str:
    recorder = _Recorder()
    otel.instrument(recorder)  # type: ignore[arg-type]
    rows = ["| instrument | kind | unit | meaning |", "|---|---|---|---|"]
    rows += [f"| `{n}` | {k} | `{u}` | {d} |" for n, k, u, d in recorder.rows]
    return "\n".join(rows)


def cli_reference() -> str:
    out: list[str] = []

    def walk(command: click.Command, path: list[str]) -> None:
        ctx = click.Context(command, info_name=" ".join(path))
        title = " ".join(path)
        out.append(f"### `{title}`\n\n```text\n{command.get_help(ctx).rstrip()}\n```\n")
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, [*path, name])

    walk(main, ["cache-service"])
    return "\n".join(out)


GENERATORS = {
    "options": options_table,
    "environment": environment_table,
    "prometheus": prometheus_table,
    "otel": otel_table,
    "cli": cli_reference,
}


def on_files(files: Files, config: Any) -> Files:
    """The benchmark charts, drawn from benchmarks/results/ (docs/hooks/charts.py)."""
    for name, png in charts.charts().items():
        files.append(File.generated(config, f"assets/charts/{name}.png", content=png))
    return files


def on_post_page(output: str, page: Any, config: Any) -> str:
    """Load the vendored mermaid (docs/assets/javascripts, 3 MB) on the pages that draw a
    diagram only, before Material's bundle looks for it (which would otherwise fetch it from a
    CDN): the site works offline and the other pages stay light."""
    if 'class="mermaid"' not in output:
        return output
    depth = page.url.count("/")
    src = "../" * depth + "assets/javascripts/mermaid.min.js"
    tag = f'<script src="{src}"></script>'
    head_idx = output.find('<script src="', output.find("</article>"))
    if head_idx < 0:
        return output.replace("</body>", tag + "</body>")
    return output[:head_idx] + tag + output[head_idx:]


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise SystemExit(f"{page.file.src_path}: unknown generated block {name!r}")
        return GENERATORS[name]()

    return MARKER.sub(fill, markdown)
