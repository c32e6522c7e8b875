"""A misconfiguration is named as such: one ERROR saying which setting to fix, the service on
the fallback without slowing callers, ``stats()`` showing it, and no "unreachable" outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cache_service import CacheService

from .helpers import eventually, unique
from .servers import RedisServer, TLSFiles

# Every guarantee here holds over redis-py's clients and over our own layer.
pytestmark = pytest.mark.usefixtures("over_both_connections")

FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.2,
        "socket_timeout": 0.25, "connect_timeout": 0.25}
SECRET = "s3cret-pass-123"


@pytest.fixture
def locked_server() -> Iterator[RedisServer]:
    """A private server whose default user needs ``SECRET``."""
    with RedisServer(password=SECRET, name="locked") as server:
        yield server


def _fast_calls(svc: CacheService, n: int = 200) -> float:
    """The third-slowest of ``n`` get/set calls, in seconds: a call that waited on Redis takes a
    0.25 s timeout, while a loaded 2-core machine may deschedule any one call for ~0.2 s."""
    durations = []
    for i in range(n):
        start = time.perf_counter()
        svc.set(f"k{i}", i)
        assert svc.get(f"k{i}") == i
        durations.append(time.perf_counter() - start)
    return sorted(durations)[-3]


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


@pytest.mark.parametrize("password", ["wrong-password-42", None])
def test_bad_or_missing_password_is_a_misconfiguration(
        locked_server: RedisServer, password: str | None,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cache_service")
    svc = CacheService(unique(), url=locked_server.url, password=password, **FAST)
    svc.get("first")
    assert _fast_calls(svc) < 0.15  # no 0.25 s timeout: the fallback serves
    time.sleep(0.5)  # several background probes: still one ERROR
    errors = _messages(caplog, logging.ERROR)
    assert len(errors) == 1, errors
    assert "password=" in errors[0]
    problem = svc.stats()["target"]["misconfiguration"]
    assert problem is not None
    assert ("rejected the credentials" if password else "requires a password") in problem
    assert "password=" in problem
    assert not any("unreachable" in m for m in _messages(caplog, logging.WARNING))
    text = " ".join(r.getMessage() for r in caplog.records) + str(svc.stats()) + repr(svc)
    assert "wrong-password-42" not in text
    assert SECRET not in text


def test_fixing_the_server_side_clears_the_misconfiguration(
        locked_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cache_service")
    svc = CacheService(unique(), url=locked_server.url, **FAST)  # no password
    svc.set("k", "v")
    assert svc.stats()["target"]["misconfiguration"] is not None
    with locked_server.client() as raw:  # a private server: no need to restore it
        raw.config_set("requirepass", "")  # now the service's (absent) password is right
    assert eventually(svc.is_redis_available, timeout=3.0)
    assert svc.stats()["target"]["misconfiguration"] is None
    assert any("accepts us again" in m for m in _messages(caplog, logging.INFO))


def test_tls_client_to_a_plain_server(
        redis_server: RedisServer, tls_files: TLSFiles, over_both_connections: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cache_service")
    # the session's server: a db per connection layer, so that each gets a target of its own
    db = 3 if over_both_connections == "wire" else 0
    url = redis_server.url.replace("redis://", "rediss://").rpartition("/")[0] + f"/{db}"
    svc = CacheService(unique(), url=url, ssl_ca_certs=tls_files.ca_cert, **FAST)
    svc.get("first")  # waits for the handshake once (a TLS client sees only a timeout)
    assert _fast_calls(svc) < 0.15  # below one 0.25 s connect or reply timeout
    assert eventually(lambda: svc.stats()["target"]["misconfiguration"], timeout=3.0)
    problem = svc.stats()["target"]["misconfiguration"]
    assert "does not speak TLS" in problem
    errors = _messages(caplog, logging.ERROR)
    assert len(errors) == 1, errors


def test_plain_client_to_a_tls_server(
        tls_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cache_service")
    url = tls_server.url.replace("rediss://", "redis://")
    user, password = tls_server.acl_user
    svc = CacheService(unique(), url=url, username=user, password=password, **FAST)
    svc.get("first")
    assert _fast_calls(svc) < 0.15  # below one 0.25 s connect or reply timeout
    assert eventually(lambda: svc.stats()["target"]["misconfiguration"], timeout=3.0)
    problem = svc.stats()["target"]["misconfiguration"]
    assert "speaks TLS" in problem
    assert password not in str(svc.stats())
