"""The ``cache-service`` command."""

from __future__ import annotations

import logging
import os

import click
from rich.console import Console

from .demo import run_demo
from .errors import ConfigurationError
from .service import CacheService

__all__ = ["main"]


def _default_url() -> str:
    return os.environ.get("REDIS_URL") or "redis://localhost:6379/0"


@click.group()
@click.version_option(package_name="cache_service")
@click.option("-v", "--verbose", is_flag=True, help="Log breaker transitions and replays.")
def main(verbose: bool) -> None:
    """cache_service: a Redis cache with a fail-fast in-memory fallback."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _service(redis_url: str | None) -> CacheService:
    """A service on ``redis_url`` (None: $REDIS_URL or localhost); an invalid URL prints one
    line to stderr and exits 2, click's usage-error code."""
    try:
        if redis_url is None:  # REDIS_URL or localhost: errors then name REDIS_URL
            return CacheService("cache-service-cli")
        return CacheService("cache-service-cli", url=redis_url)
    except ConfigurationError as exc:
        where = "" if redis_url is None else " (--redis-url)"
        message = str(exc).replace("\r", "\\r").replace("\n", "\\n")  # one line, always
        click.echo(f"error: invalid Redis URL{where}: {message}", err=True)
        raise SystemExit(2) from None


@main.command()
@click.option("--redis-url", default=None, show_default="$REDIS_URL or localhost:6379",
              help="Redis to use; unreachable means the demo runs on the memory store.")
@click.option("--latency", default=0.05, show_default=True, type=click.FloatRange(0, 5),
              help="Seconds each simulated database query takes.")
def demo(redis_url: str | None, latency: float) -> None:
    """Walk through the usage contract against a simulated slow database."""
    _service(redis_url)  # an invalid URL: one line and exit 2, before the walk-through
    url = redis_url if redis_url is not None else _default_url()
    raise SystemExit(run_demo(url, latency, Console(highlight=False)))


@main.command()
@click.option("--redis-url", default=None, show_default="$REDIS_URL or localhost:6379",
              help="Redis to check.")
def check(redis_url: str | None) -> None:
    """Say whether Redis answers at URL and which store a service would use.

    Exit 0: reachable; 1: unreachable; 2: the URL (--redis-url or $REDIS_URL) is invalid.
    """
    svc = _service(redis_url)
    library_log = logging.getLogger("cache_service")
    level = library_log.level
    if not library_log.isEnabledFor(logging.INFO):  # without -v: our line says it all
        library_log.setLevel(logging.ERROR)
    try:
        reachable = svc.is_redis_available()
    finally:
        library_log.setLevel(level)
        svc.close()
    if reachable:
        click.echo(f"Redis at {svc.location}: reachable")
    else:
        click.echo(f"in-memory: Redis unreachable at {svc.location}")
        raise SystemExit(1)
