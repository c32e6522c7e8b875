"""Credentials are part of a location's host-shared identity, without leaking them.

A service configured with a wrong password (default user, ACL user, Sentinel's own password)
on the same Redis as services with the right one must not open their breaker, in this process
or in another process of the host; it is reported as a misconfiguration of its own. No file
name of the state directory is the password or a fast unsalted hash of it, and no file holds it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache_service import CacheService
from cache_service._host.state import location_name
from cache_service._host.statedir import KEY_FILE, host_key
from cache_service.config import parse_url

from .helpers import unique
from .servers import RedisServer, SentinelDeployment

pytestmark = pytest.mark.usefixtures("over_both_connections")

RIGHT = "right-pass-7f3a"
WRONG = "wrong-pass-9c1e"
USER, USER_RIGHT, USER_WRONG = "app", "app-pass-51d2", "app-wrong-0b7e"
FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.2,
        "socket_timeout": 0.25, "connect_timeout": 0.25}
SECRETS = (RIGHT, WRONG, USER_RIGHT, USER_WRONG)


@pytest.fixture
def locked_server() -> Iterator[RedisServer]:
    """A private server: the default user needs ``RIGHT``, ACL user ``app`` ``USER_RIGHT``."""
    with RedisServer(password=RIGHT, acl_user=(USER, USER_RIGHT), name="creds") as server:
        yield server


def _url(server: RedisServer, user: str, password: str) -> str:
    host, port = server.host, server.port
    return f"redis://{user}:{password}@{host}:{port}/0"


CASES = {"default-user": ("", RIGHT, WRONG), "acl-user": (USER, USER_RIGHT, USER_WRONG)}


def _in_redis(server: RedisServer, svc: CacheService, key: str) -> bool:
    with server.client() as raw:
        return bool(raw.exists(svc.full_key(key)))


def _assert_no_secret_in(directory: Path) -> None:
    """No name of ``directory`` is a secret or an unsalted hash of one; no file holds one."""
    fast = {h(s.encode()).hexdigest()[:n] for s in SECRETS
            for h in (hashlib.md5, hashlib.sha1, hashlib.sha256, hashlib.blake2b)
            for n in (12, 16, 20, 32, 40, 64)}
    for path in directory.iterdir():
        assert not any(s in path.name for s in SECRETS), path.name
        assert not any(f in path.name for f in fast), path.name
        data = path.read_bytes()
        assert not any(s.encode() in data for s in SECRETS), path.name


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_wrong_password_in_this_process_leaves_the_right_ones_on_redis(
        locked_server: RedisServer, tmp_path: Path, case: str) -> None:
    user, right, wrong = CASES[case]
    state = tmp_path / "state"
    good = CacheService(unique(), url=_url(locked_server, user, right), state_dir=state, **FAST)
    bad = CacheService(unique(), url=_url(locked_server, user, wrong), state_dir=state, **FAST)
    good.set("before", 1)
    for i in range(5):
        bad.set(f"k{i}", i)  # each call on the fallback; the breaker of ``bad`` opens
    problem = bad.stats()["target"]["misconfiguration"]
    assert problem is not None
    assert "WRONGPASS" in problem, problem
    assert bad.stats()["target"]["breaker_state"] != "closed"
    good.set("after", 2)
    assert good.stats()["target"]["breaker_state"] == "closed"
    assert good.stats()["target"]["misconfiguration"] is None
    assert _in_redis(locked_server, good, "after")  # not on the fallback store
    assert good.is_redis_available() is True
    names = {location_name(svc._target.location, state) for svc in (good, bad)}
    assert len(names) == 2
    key = state / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.stat().st_size == 32
    _assert_no_secret_in(state)


_PROCESS = """
import sys, time
from cache_service import CacheService
url, state, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
svc = CacheService(prefix, url=url, state_dir=state, breaker_min_backoff=5.0,
                   breaker_max_backoff=5.0, socket_timeout=0.25, connect_timeout=0.25)
for i in range(n):
    svc.set(f"k{i}", i)
target = svc.stats()["target"]
print(target["breaker_state"], target["misconfiguration"] is not None)
"""


def _other_process(url: str, state: Path | None, prefix: str, n: int = 5) -> list[str]:
    """Run services in a child process (the suite's ``CACHE_SERVICE_DIR`` when ``state`` is
    None); its breaker state and whether it saw a misconfiguration."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_PROCESS), url,
                          str(state) if state else os.environ["CACHE_SERVICE_DIR"], prefix,
                          str(n)], capture_output=True, text=True, timeout=60, check=True,
                         env=dict(os.environ))
    assert not any(s in out.stderr for s in SECRETS), out.stderr
    return out.stdout.split()


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_wrong_password_in_another_process_leaves_the_right_ones_on_redis(
        locked_server: RedisServer, case: str) -> None:
    """Both orders, in the suite's state directory: the wrong one in a child process while
    the right one is used here, and the right one in a child after the wrong one here."""
    user, right, wrong = CASES[case]
    state = Path(os.environ["CACHE_SERVICE_DIR"])
    good = CacheService(unique(), url=_url(locked_server, user, right), **FAST)
    good.set("before", 1)
    assert _other_process(_url(locked_server, user, wrong), None, unique()) == ["open", "True"]
    good.set("after", 2)
    assert _in_redis(locked_server, good, "after")
    assert good.stats()["target"]["breaker_state"] == "closed"

    bad = CacheService(unique(), url=_url(locked_server, user, wrong),
                       **{**FAST, "breaker_min_backoff": 5.0, "breaker_max_backoff": 5.0})
    bad.set("x", 1)
    assert bad.stats()["target"]["breaker_state"] == "open"
    assert _other_process(_url(locked_server, user, right), None, unique()) == \
        ["closed", "False"]
    assert not any(s in p.name for p in state.iterdir() for s in SECRETS)


def test_the_host_key_is_made_once_safely_and_shared(tmp_path: Path) -> None:
    """One key per directory, the same in every process; a planted symlink is refused; a key
    cut short (a crash while it was written) is made anew."""
    state = tmp_path / "state"
    key = host_key(state)
    script = ("import sys; from pathlib import Path; from cache_service._host.statedir import "
              "host_key; print(host_key(Path(sys.argv[1])).hex())")
    children = [subprocess.Popen([sys.executable, "-c", script, str(state)],
                                 stdout=subprocess.PIPE, text=True) for _ in range(3)]
    assert {c.communicate(timeout=60)[0].strip() for c in children} == {key.hex()}
    assert host_key(state) == key
    (state / KEY_FILE).write_bytes(key[:5])
    remade = host_key(state)
    assert len(remade) == 32
    assert remade != key
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    (other / KEY_FILE).symlink_to(state / KEY_FILE)
    with pytest.raises(OSError, match=r"symbolic link|Too many levels"):
        host_key(other)
    url = "redis://:pw@127.0.0.1:1/0"
    assert location_name(parse_url(url), state) != location_name(parse_url(url), other)
    # without credentials the name does not depend on the key (nor reads it)
    plain = parse_url("redis://127.0.0.1:1/0")
    assert location_name(plain, state) == location_name(plain, other) == \
        location_name(plain, None)


def test_a_wrong_sentinel_password_leaves_the_right_ones_on_redis(
        tmp_path: Path, over_both_connections: str) -> None:
    """Sentinels that need a password: a service with a wrong ``sentinel_password`` on the
    same sentinels and service does not move the breaker of one with the right password."""
    state = tmp_path / "state"
    with SentinelDeployment() as private:
        primary = private.primary()  # asked before the sentinels want a password
        for sentinel in private.sentinel_servers:
            with sentinel.client() as raw:
                raw.execute_command("ACL", "SETUSER", "default", "on", ">s3cret-sentinel")
        common = {"sentinels": private.sentinels, "service_name": private.service_name,
                  "state_dir": state, **FAST}
        good = CacheService(unique(), sentinel_password="s3cret-sentinel", **common)
        bad = CacheService(unique(), sentinel_password="wrong-sentinel", **common)
        good.set("before", 1)
        for i in range(3):
            bad.set(f"k{i}", i)
        assert bad.stats()["target"]["breaker_state"] != "closed"
        good.set("after", 2)
        assert good.stats()["target"]["breaker_state"] == "closed"
        with primary.client() as raw:
            assert raw.exists(good.full_key("after")) == 1
        assert not any("sentinel" in p.name for p in state.iterdir())
        for path in state.iterdir():
            assert b"s3cret-sentinel" not in path.read_bytes()
            assert b"wrong-sentinel" not in path.read_bytes()


def test_metrics_keep_a_wrong_password_apart_from_the_right_one(
        locked_server: RedisServer, tmp_path: Path) -> None:
    """Both targets are described ``redis://***@host/0``: the exporters label them apart (a
    keyed fingerprint, never the password), so the right one's breaker does not read open."""
    from prometheus_client import CollectorRegistry, generate_latest

    from cache_service.integrations import prometheus

    state = tmp_path / "state"
    good = CacheService(unique(), url=_url(locked_server, "", RIGHT), state_dir=state, **FAST)
    bad = CacheService(unique(), url=_url(locked_server, "", WRONG), state_dir=state, **FAST)
    good.set("k", 1)
    bad.set("k", 1)
    reg = CollectorRegistry()
    prometheus.register(reg)
    text = generate_latest(reg).decode()
    assert not any(s in text for s in SECRETS)
    states = [line for line in text.splitlines()
              if line.startswith("cache_service_breaker_state{") and line.endswith(" 1.0")]
    ours = [line for line in states if f":{locked_server.port}/0" in line]
    assert len(ours) == 2, states
    assert sum('state="closed"' in line for line in ours) == 1, ours
    assert sum('state="open"' in line for line in ours) == 1, ours
