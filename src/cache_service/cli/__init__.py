"""The ``cache-service`` command (click + rich): one module per group of commands.

Every command that talks to Redis takes ``--redis-url`` (default ``$REDIS_URL``, else
localhost) and waits for it a bounded time (``--timeout``). Exit codes: 0 ok, 1 failure
(Redis unreachable or failing, key absent, declined confirmation), 2 usage (bad option,
URL, prefix, key or pattern). Errors are one ``error: ...`` line on stderr, without secrets.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click
from rich.console import Console

from cache_service.cli._common import redis_url_option, service, usage_error
from cache_service.cli.bench import bench
from cache_service.cli.inspect import check, get, info, keys, ping
from cache_service.cli.watch import stats
from cache_service.cli.write import clear, delete, invalidate
from cache_service.demo import run_demo
from cache_service.errors import ConfigurationError

__all__ = ["main"]


class _Group(click.Group):
    """Commands whose arguments the library refuses (a key, pattern or prefix) exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            usage_error(str(exc))


@click.group(cls=_Group)
@click.version_option(package_name="cache_service")
@click.option("-v", "--verbose", is_flag=True, help="Log breaker transitions and replays.")
def main(verbose: bool) -> None:
    """cache_service: a Redis cache with a fail-fast in-memory fallback."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
@redis_url_option
@click.option("--latency", default=0.05, show_default=True, type=click.FloatRange(0, 5),
              help="Seconds each simulated database query takes.")
def demo(redis_url: str | None, latency: float) -> None:
    """Walk through the usage contract against a simulated slow database."""
    service(redis_url, timeout=0.25, fallback=True)  # an invalid URL: one line, exit 2, first
    url = redis_url if redis_url is not None else (
        os.environ.get("REDIS_URL") or "redis://localhost:6379/0")
    raise SystemExit(run_demo(url, latency, Console(highlight=False)))


for command in (ping, check, info, keys, get, delete, invalidate, clear, stats, bench):
    main.add_command(command)
