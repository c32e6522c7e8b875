"""Read-only commands: ``ping``, ``check``, ``info``, ``keys``, ``get``."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

import click
import redis
from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table

from cache_service.cli._common import (
    Connection,
    fail,
    misconfiguration,
    one_line,
    quiet_library,
    redis_url_option,
    service,
    timeout_option,
)
from cache_service.cli._payload import describe_header, describe_payload
from cache_service.keys import NAMESPACE, KeySpace

__all__ = ["check", "get", "info", "keys", "ping"]

out = Console(highlight=False, soft_wrap=True)


@click.command()
@redis_url_option
@timeout_option
def ping(redis_url: str | None, timeout: float) -> None:
    """PING Redis and print the round trip. Exit 0: answered; 1: did not; 2: invalid URL."""
    conn = Connection(redis_url, timeout=timeout)
    try:
        started = time.perf_counter()
        conn.ping()
        elapsed = time.perf_counter() - started
    except (redis.RedisError, OSError) as exc:
        conn.failed(exc)
    conn.close()
    click.echo(f"PONG from {conn.location} in {elapsed * 1000:.2f} ms")


@click.command()
@redis_url_option
def check(redis_url: str | None) -> None:
    """Say whether Redis answers at URL and which store a service would use.

    Exit 0: reachable; 1: unreachable or misconfigured (the setting to fix is named: password,
    ACL user, TLS); 2: the URL (--redis-url or $REDIS_URL) is invalid.
    """
    svc = service(redis_url, timeout=0.25, fallback=True)
    problem = None
    with quiet_library():
        try:
            reachable = svc.is_redis_available()
            if not reachable:
                problem = misconfiguration(svc)
        finally:
            svc.close()
    if reachable:
        click.echo(f"Redis at {svc.location}: reachable")
    elif problem is not None:
        click.echo(f"in-memory: Redis misconfigured: {one_line(problem)}")
        raise SystemExit(1)
    else:
        click.echo(f"in-memory: Redis unreachable at {svc.location}")
        raise SystemExit(1)


def _section(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _our_keys(conn: Connection, limit: int) -> tuple[Counter[str], int, bool]:
    """Keys named ``cs:{prefix}::...`` per prefix (by name), keys scanned, whether cut short."""
    per_prefix: Counter[str] = Counter()
    scanned = 0
    for key in conn.client.scan_iter(match=f"{NAMESPACE}*", count=1000):
        scanned += 1
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        prefix, sep, _ = name[len(NAMESPACE):].partition("::")
        if sep and prefix and not name.startswith(NAMESPACE + ":"):
            per_prefix[prefix] += 1
        if scanned >= limit:
            return per_prefix, scanned, True
    return per_prefix, scanned, False


def server_identity(server: dict[str, Any]) -> tuple[str, Any, Any]:
    """(name, version, mode) of a server from its own INFO fields: Valkey names itself
    (``server_name``, ``valkey_version``, ``server_mode``) and keeps ``redis_version`` at the
    Redis release it is compatible with; Redis has only the ``redis_*`` fields."""
    name = str(server.get("server_name") or "redis")
    version = server.get(f"{name}_version", server.get("redis_version"))
    return name, version, server.get("server_mode", server.get("redis_mode"))


@click.command()
@redis_url_option
@timeout_option
@click.option("--scan-limit", default=100_000, show_default=True, type=click.IntRange(0),
              help="Stop counting our keys after this many (SCAN walks the whole database).")
def info(redis_url: str | None, timeout: float, scan_limit: int) -> None:
    """Server, topology, memory, and our key count per prefix."""
    conn = Connection(redis_url, timeout=timeout)
    try:
        if conn.kind == "cluster":
            nodes = conn.client.get_primaries()
            server = conn.client.info("server", target_nodes=nodes[0])
            memory = conn.client.info("memory", target_nodes=nodes[0])
            cluster = conn.client.cluster_info()
            topology = [("kind", "cluster"), ("state", cluster.get("cluster_state")),
                        ("primaries", len(nodes)),
                        ("known nodes", cluster.get("cluster_known_nodes")),
                        ("memory shown for", nodes[0].name)]
            dbsize = conn.client.dbsize()  # redis-py sums it over the primaries
        else:
            server = conn.client.info("server")
            memory = conn.client.info("memory")
            replication = conn.client.info("replication")
            topology = [("kind", conn.kind), ("role", replication.get("role")),
                        ("connected replicas", replication.get("connected_slaves", 0))]
            dbsize = conn.client.dbsize()
        per_prefix, scanned, cut = _our_keys(conn, scan_limit) if scan_limit else (
            Counter(), 0, True)
    except (redis.RedisError, OSError) as exc:
        conn.failed(exc)
    conn.close()
    name, version, mode = server_identity(server)
    out.print(_section("Server", [
        ("location", conn.location), ("server", name), ("version", version),
        ("mode", mode), ("os", server.get("os")),
        ("uptime", f"{int(server.get('uptime_in_seconds', 0))} s")]))
    out.print(_section("Topology", topology))
    out.print(_section("Memory", [
        ("used", memory.get("used_memory_human")), ("peak", memory.get("used_memory_peak_human")),
        ("maxmemory", memory.get("maxmemory_human") or memory.get("maxmemory")),
        ("policy", memory.get("maxmemory_policy"))]))
    rows: list[tuple[str, Any]] = [("all keys (db)", dbsize)]
    rows += [(f"prefix {p}", n) for p, n in sorted(per_prefix.items())]
    if cut:
        rows.append(("note", f"counted by name over the first {scanned} cs:* keys "
                             "(--scan-limit)"))
    out.print(_section("Keys", rows))


def _ttl(pttl: int) -> str:
    if pttl == -1:
        return "none"
    if pttl < 0:
        return "gone"
    return f"{pttl / 1000:.1f}s"


@click.command()
@click.argument("prefix")
@click.argument("pattern", default="*")
@redis_url_option
@timeout_option
@click.option("--page-size", default=50, show_default=True, type=click.IntRange(1, 10_000),
              help="Rows per page (SCAN COUNT too); between pages a terminal asks to go on.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1),
              help="Stop after this many keys.")
def keys(prefix: str, pattern: str, redis_url: str | None, timeout: float, page_size: int,
         limit: int) -> None:
    """List PREFIX's keys matching PATTERN (a Redis glob on your own keys, default '*'):
    key, type, TTL, size, codec and writer stamp, paged. SCAN, never KEYS."""
    space = KeySpace(prefix)
    match = space.pattern(pattern)  # a pattern the library refuses: exit 2, before connecting
    conn = Connection(redis_url, prefix, timeout)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    shown = 0
    try:
        batch: list[bytes] = []
        scan = conn.client.scan_iter(match=match, count=page_size)
        for key in scan:
            batch.append(key)
            if len(batch) == page_size or shown + len(batch) == limit:
                shown += _page(conn, space, batch)
                batch = []
                if shown >= limit:
                    out.print(f"[dim]stopped at --limit {limit}[/dim]")
                    break
                if interactive and not click.confirm("more?", default=True):
                    break
        else:
            if batch or not shown:
                shown += _page(conn, space, batch)
    except (redis.RedisError, OSError) as exc:
        conn.failed(exc)
    conn.close()
    out.print(f"{shown} key(s)")


def _page(conn: Connection, space: KeySpace, batch: list[bytes]) -> int:
    table = Table("key", "type", "TTL", "size", "codec", "writer#seq", "note")
    if batch:
        pipe = conn.client.pipeline(transaction=False)
        for key in batch:
            pipe.type(key)
            pipe.pttl(key)
            pipe.getrange(key, 0, 10)
            pipe.strlen(key)  # an error on a non-string: kept as a reply
        replies = pipe.execute(raise_on_error=False)
        for i, key in enumerate(batch):
            kind, pttl, head, size = replies[4 * i:4 * i + 4]
            kind = kind.decode() if isinstance(kind, bytes) else kind
            name = key.decode("utf-8", "replace")[len(space.head):]
            if kind != "string":
                table.add_row(name, kind, _ttl(pttl), "-", "-", "-", "foreign")
                continue
            found = describe_header(head)
            note = "" if found.kind == "ours" else f"{found.kind}: {found.problem}"
            table.add_row(name, kind, _ttl(pttl), f"{size} B", found.codec, found.writer, note)
    out.print(table)
    return len(batch)


@click.command()
@click.argument("prefix")
@click.argument("key")
@redis_url_option
@timeout_option
def get(prefix: str, key: str, redis_url: str | None, timeout: float) -> None:
    """Show PREFIX's KEY: its decoded value (pretty-printed), TTL and header.

    Exit 0: a value of ours; 1: absent, foreign or corrupt (reported as such) or Redis failed.
    """
    full = KeySpace(prefix).full(key)  # a key the library refuses: exit 2, before connecting
    conn = Connection(redis_url, prefix, timeout)
    try:
        kind = conn.client.type(full)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        pttl = conn.client.pttl(full)
        raw = conn.client.get(full) if kind == "string" else None
    except (redis.RedisError, OSError) as exc:
        conn.failed(exc)
    conn.close()
    if kind == "none":
        fail(f"{key!r} not found under prefix {prefix!r} (Redis key {full!r})")
    rows: list[tuple[str, Any]] = [("redis key", full), ("type", kind), ("ttl", _ttl(pttl))]
    if raw is None:
        out.print(_section("Key", [*rows, ("payload", "foreign: not a string value")]))
        raise SystemExit(1)
    found = describe_payload(full, raw)
    rows += [("size", f"{len(raw)} B"), ("payload", found.kind), ("codec", found.codec),
             ("writer#seq", found.writer)]
    if found.tags:
        rows.append(("tags", ", ".join(found.tags)))
    if found.problem:
        rows.append(("note", found.problem))
    out.print(_section("Key", rows))
    if found.decoded:
        out.print(Pretty(found.value, expand_all=True))
    if found.kind != "ours":
        raise SystemExit(1)
