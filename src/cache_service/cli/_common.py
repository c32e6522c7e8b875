"""What every command shares: the ``--redis-url`` option, connecting in bounded time, and
errors as one line with conventional exit codes (0 ok, 1 failure, 2 usage)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import click
import redis

from cache_service._redis.backend import describe_error, ping_primaries
from cache_service._redis.errors import (
    _scrub,
    classify_error,
    diagnose,
    misconfiguration_message,
    refusal_message,
)
from cache_service._runtime.view import runtime_view
from cache_service.config import TargetOptions
from cache_service.errors import ConfigurationError
from cache_service.service import CacheService

__all__ = ["Connection", "fail", "misconfiguration", "one_line", "quiet_library",
           "redis_url_option", "service", "timeout_option", "usage_error"]

F = TypeVar("F", bound=Callable[..., Any])
CLI_PREFIX = "cache-service-cli"


def one_line(text: str) -> str:
    """``text`` on one line, whatever it holds."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on one stderr line and exit with ``code``."""
    click.echo(f"error: {one_line(message)}", err=True)
    raise SystemExit(code)


def usage_error(message: str) -> NoReturn:
    fail(message, 2)


def redis_url_option(f: F) -> F:
    """``--redis-url`` (default: $REDIS_URL, else localhost)."""
    return click.option("--redis-url", default=None, show_default="$REDIS_URL or localhost:6379",
                        help="Redis to use (redis://, rediss://, redis+sentinel://, "
                             "redis+cluster://).")(f)


def timeout_option(f: F) -> F:
    return click.option("--timeout", default=1.0, show_default=True,
                        type=click.FloatRange(0.01, 60),
                        help="Seconds to wait for Redis per command (connect and reply).")(f)


@contextlib.contextmanager
def quiet_library() -> Iterator[None]:
    """Without -v the library's outage warnings would repeat what our one line says."""
    log = logging.getLogger("cache_service")
    level = log.level
    if not log.isEnabledFor(logging.INFO):
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def service(redis_url: str | None, prefix: str = CLI_PREFIX, timeout: float = 1.0,
            *, fallback: bool = False) -> CacheService:
    """A service on ``redis_url``; an invalid URL or prefix is a usage error (exit 2).

    The CLI's services keep their state to this process (no host files): a command that
    cannot reach Redis fails rather than journaling for later.
    """
    options: dict[str, Any] = {"socket_timeout": timeout, "connect_timeout": timeout}
    if not fallback:
        options.update(fallback="process", state_dir=False)
    try:
        if redis_url is None:  # REDIS_URL or localhost: errors then name REDIS_URL
            return CacheService(prefix, **options)
        return CacheService(prefix, url=redis_url, **options)
    except ConfigurationError as exc:
        message = str(exc)
        if "prefix" in message and "URL" not in message:
            usage_error(message)
        where = "" if redis_url is None else " (--redis-url)"
        usage_error(f"invalid Redis URL{where}: {message}")


def misconfiguration(svc: CacheService, exc: BaseException | None = None,
                     timeout: float = 0.25) -> str | None:
    """Why Redis refuses ``svc`` for a reason only a setting can fix (a password, an ACL, TLS),
    as the library says it, or None (an outage, or nothing learned): the error ``exc`` if it
    is one, else what the service's target found, else the library's TLS-mismatch probe."""
    location = runtime_view(svc).location
    kind = None if exc is None else classify_error(exc, location.kind)
    if exc is not None and kind == "misconfigured":
        return misconfiguration_message(exc, location)
    if exc is not None and kind == "denied":  # NOPERM, or a standalone replica
        return refusal_message(exc, location)
    found = svc.stats()["target"].get("misconfiguration")
    if found:
        return str(found)
    probe = min(timeout, 0.25)  # the library's own timeouts: a hung server costs little more
    return diagnose(location, TargetOptions(socket_timeout=probe, connect_timeout=probe))


class Connection:
    """A reachable Redis: the service (for the library's own operations) and its client."""

    def __init__(self, redis_url: str | None, prefix: str = CLI_PREFIX,
                 timeout: float = 1.0) -> None:
        self.svc = service(redis_url, prefix, timeout)
        self.view = runtime_view(self.svc)
        self.location = self.svc.location
        self.kind = self.view.location.kind
        with quiet_library():
            try:
                self.client: Any = self.view.driver.sync_client()
                self.ping()
            except (redis.RedisError, OSError) as exc:
                problem = misconfiguration(self.svc, exc, timeout)
                self.svc.close()
                if problem is not None:
                    fail(f"Redis misconfigured: {one_line(problem)}")
                fail(f"Redis unreachable at {self.location}: {self.describe(exc)}")

    def ping(self) -> None:
        if self.kind == "cluster":
            ping_primaries(self.client)
        else:
            self.client.ping()

    def describe(self, exc: BaseException) -> str:
        """A Redis error without secrets, on one line."""
        return one_line(_scrub(describe_error(exc), self.view.location))

    def failed(self, exc: BaseException) -> NoReturn:
        self.svc.close()
        fail(f"Redis at {self.location} failed: {self.describe(exc)}")

    def fell_back(self) -> bool:
        """Whether an operation of the library went to the fallback store (Redis failed)."""
        return self.view.on_fallback

    def close(self) -> None:
        self.svc.close()
