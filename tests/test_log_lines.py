"""What the library logs: the logger's name says "cache_service" once (messages carry no prefix
of their own, which every ``%(name)s: %(message)s`` format doubled), and no line holds a
password or a whole key, through an outage, its recovery and a misconfiguration."""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache_service import CacheService

from .helpers import eventually, unique
from .servers import ChaosProxy, RedisServer

SECRET, WRONG = "log-secret-5be1", "log-wrong-0c4d"
TOKEN = "session-tok-9f8e7d6c5b4a"  # a key that holds a token: never logged whole
FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.2,
        "socket_timeout": 0.2, "connect_timeout": 0.2}
SRC = Path(__file__).resolve().parent.parent / "src" / "cache_service"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


@pytest.fixture
def locked_proxy() -> Iterator[tuple[RedisServer, ChaosProxy]]:
    """A server whose default user needs ``SECRET``, behind a proxy that can cut it."""
    with RedisServer(password=SECRET, name="logs") as server, \
            ChaosProxy(*server.address) as proxy:
        yield server, proxy


def _lines(records: list[logging.LogRecord]) -> list[str]:
    """Every record as the usual formats print it (the CLI's, and logging's default)."""
    formats = ("%(levelname)s %(name)s: %(message)s", logging.BASIC_FORMAT)
    return [logging.Formatter(f).format(r) for r in records for f in formats]


@pytest.mark.usefixtures("over_both_connections")
def test_outage_recovery_and_misconfiguration_lines(
        locked_proxy: tuple[RedisServer, ChaosProxy], caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    server, proxy = locked_proxy
    caplog.set_level(logging.DEBUG, logger="cache_service")
    url = f"redis://:{SECRET}@127.0.0.1:{proxy.port}/0"
    svc = CacheService(unique(), url=url, state_dir=tmp_path / "state", **FAST)
    svc.set(TOKEN, "v")
    with server.client() as raw:  # a foreign value at one of our keys: a warning naming it
        raw.set(svc.full_key(TOKEN + "-foreign"), b"not ours")
    assert svc.get(TOKEN + "-foreign") is None
    proxy.cut()  # an outage: journaled invalidations, then a recovery that replays them
    svc.delete(TOKEN)
    svc.set(TOKEN, "during")
    proxy.heal()
    assert eventually(svc.is_redis_available, timeout=5.0)
    wrong = CacheService(unique(), url=url.replace(SECRET, WRONG), state_dir=tmp_path / "state",
                         **FAST)
    wrong.set(TOKEN, "x")
    assert wrong.stats()["target"]["misconfiguration"] is not None
    records = [r for r in caplog.records if r.name.startswith("cache_service")]
    said = " ".join(r.getMessage() for r in records)
    for needed in ("unreachable", "is back", "not a value of ours", "WRONGPASS"):
        assert needed in said, (needed, said)
    for record in records:
        assert not record.getMessage().lstrip().startswith("cache_service"), record.getMessage()
    for line in _lines(records):
        assert "cache_service: cache_service" not in line, line
        assert "cache_service:cache_service" not in line, line
        assert SECRET not in line, line
        assert WRONG not in line, line
        assert TOKEN not in line, line


def _log_calls(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, leading text) of each logging call whose message starts with a literal."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS and node.args):
            continue
        first = node.args[1] if node.func.attr == "log" and len(node.args) > 1 else node.args[0]
        if isinstance(first, ast.JoinedStr) and first.values:
            first = first.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield node.lineno, first.value


def test_no_log_message_in_the_source_carries_the_prefix() -> None:
    """Every logging call of the package, also on paths no test drives: the logger's name is
    the prefix, so a message starting with "cache_service:" prints it twice."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for line, text in _log_calls(ast.parse(path.read_text(), str(path))):
            if text.lstrip().startswith("cache_service:"):
                found.append(f"{path.relative_to(SRC)}:{line}: {text[:60]!r}")
    assert not found, found
    assert len(list(SRC.rglob("*.py"))) > 50  # the walk found the package
