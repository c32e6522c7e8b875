"""Commands that remove keys: ``delete``, ``invalidate``, ``clear``.

``invalidate`` and ``clear`` count first, ask (``--yes`` skips, ``--dry-run`` only counts),
then remove in batches through the library's ownership-checked unlink (a script that unlinks
a key only if it holds a payload of ours), so foreign keys under the prefix are never touched;
a last pass of the library's own ``invalidate_pattern``/``clear_all`` catches keys written
meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

import click
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cache_service._ops.protocol import Unavailable
from cache_service.cli._common import (
    Connection,
    fail,
    quiet_library,
    redis_url_option,
    timeout_option,
)
from cache_service.codec import MAGIC
from cache_service.keys import KeySpace

__all__ = ["clear", "delete", "invalidate"]

BATCH = 500
PROGRESS_FROM = 2_000  # keys: smaller runs finish before a bar would show anything


@click.command()
@click.argument("prefix")
@click.argument("key", nargs=-1, required=True)
@redis_url_option
@timeout_option
def delete(prefix: str, key: tuple[str, ...], redis_url: str | None, timeout: float) -> None:
    """Delete KEY... of PREFIX; prints how many existed."""
    space = KeySpace(prefix)
    for name in key:  # a key the library refuses: exit 2, before connecting
        space.full(name)
    conn = Connection(redis_url, prefix, timeout)
    with quiet_library():
        removed = conn.svc.delete(*key)
    if conn.fell_back():
        conn.close()
        fail(f"Redis at {conn.location} failed during the delete; it may not be applied")
    conn.close()
    click.echo(f"deleted {removed} of {len(key)} key(s) under prefix {prefix!r}")


def _matches(conn: Connection, pattern: str) -> tuple[list[bytes], int]:
    """Keys matching ``pattern`` that hold our payloads, and how many foreign ones match."""
    ours: list[bytes] = []
    foreign = 0
    found = list(conn.client.scan_iter(match=pattern, count=1000))
    for start in range(0, len(found), BATCH):
        chunk = found[start:start + BATCH]
        pipe = conn.client.pipeline(transaction=False)
        for key in chunk:
            pipe.type(key)
            pipe.getrange(key, 0, 1)
        replies = pipe.execute(raise_on_error=False)
        for i, key in enumerate(chunk):
            kind, head = replies[2 * i], replies[2 * i + 1]
            if kind in (b"string", "string") and head == MAGIC:
                ours.append(key)
            elif kind not in (b"none", "none"):
                foreign += 1
    return ours, foreign


def _remove(conn: Connection, what: str, pattern: str, yes: bool, dry_run: bool,
            last_pass: Callable[[], int]) -> None:
    try:
        ours, foreign = _matches(conn, pattern)
    except (redis.RedisError, OSError) as exc:
        conn.failed(exc)
    note = f" ({foreign} foreign key(s) match too and will be left alone)" if foreign else ""
    click.echo(f"{len(ours)} key(s) {what}{note}")
    if dry_run:
        conn.close()
        click.echo("dry run: nothing removed")
        return
    if not ours:
        conn.close()
        return
    if not yes and not click.confirm(f"Remove {len(ours)} key(s)?", default=False):
        conn.close()
        fail("aborted: nothing removed")
    driver = conn.view.driver
    removed = 0
    console = Console(stderr=True)
    show = len(ours) >= PROGRESS_FROM
    with quiet_library(), Progress(TextColumn("removing"), BarColumn(), MofNCompleteColumn(),
                                   TimeElapsedColumn(), console=console, transient=True,
                                   disable=not show) as bar:
        task = bar.add_task("remove", total=len(ours))
        try:
            for start in range(0, len(ours), BATCH):
                chunk = ours[start:start + BATCH]
                removed += driver.run(driver.unlink_owned(chunk))
                bar.advance(task, len(chunk))
        except (Unavailable, redis.RedisError, OSError) as exc:
            conn.failed(exc)
        removed += last_pass()  # the library's SCAN + owned unlink: keys written meanwhile
    if conn.fell_back():
        conn.close()
        fail(f"Redis at {conn.location} failed during the removal; {removed} key(s) were "
             "removed, the rest may remain")
    conn.close()
    click.echo(f"removed {removed} key(s)")


@click.command()
@click.argument("prefix")
@click.argument("pattern")
@redis_url_option
@timeout_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
def invalidate(prefix: str, pattern: str, redis_url: str | None, timeout: float, yes: bool,
               dry_run: bool) -> None:
    """Remove PREFIX's keys matching PATTERN (a Redis glob on your own keys)."""
    match = KeySpace(prefix).pattern(pattern)  # refused: exit 2, before connecting
    conn = Connection(redis_url, prefix, timeout)
    _remove(conn, f"of prefix {prefix!r} match {pattern!r}", match, yes, dry_run,
            lambda: conn.svc.invalidate_pattern(pattern))


@click.command()
@click.argument("prefix")
@redis_url_option
@timeout_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
def clear(prefix: str, redis_url: str | None, timeout: float, yes: bool, dry_run: bool) -> None:
    """Remove every key of PREFIX (and nothing else)."""
    conn = Connection(redis_url, prefix, timeout)
    _remove(conn, f"under prefix {prefix!r}", KeySpace(prefix).all_pattern, yes, dry_run,
            conn.svc.clear_all)
