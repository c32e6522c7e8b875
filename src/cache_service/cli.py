"""The ``cache-service`` command."""

from __future__ import annotations

import logging
import os

import click
from rich.console import Console

from .demo import run_demo
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


@main.command()
@click.option("--redis-url", default=_default_url, show_default="$REDIS_URL or localhost:6379",
              help="Redis to use; unreachable means the demo runs on the memory store.")
@click.option("--latency", default=0.05, show_default=True, type=click.FloatRange(0, 5),
              help="Seconds each simulated database query takes.")
def demo(redis_url: str, latency: float) -> None:
    """Walk through the usage contract against a simulated slow database."""
    raise SystemExit(run_demo(redis_url, latency, Console(highlight=False)))


@main.command()
@click.option("--redis-url", default=_default_url, show_default="$REDIS_URL or localhost:6379")
def check(redis_url: str) -> None:
    """Say whether Redis answers at URL and which store a service would use."""
    svc = CacheService("cache-service-check", url=redis_url)
    if svc.is_redis_available():
        click.echo(f"Redis at {svc.location}: reachable")
    else:
        click.echo(f"in-memory: Redis unreachable at {svc.location}")
        raise SystemExit(1)
