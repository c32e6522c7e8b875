"""Where host-shared state lives, how it is bounded, and what happens when the disk fails."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cache_service import CacheService
from cache_service._host.state import location_name, resolve_dir

from .helpers import eventually, unique
from .servers import ChaosProxy, RedisServer

FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.2,
        "socket_timeout": 0.15, "connect_timeout": 0.15}


def test_directory_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_SERVICE_DIR", str(tmp_path / "env"))
    assert resolve_dir(None) == tmp_path / "env"
    assert resolve_dir(str(tmp_path / "opt")) == tmp_path / "opt"
    assert resolve_dir(False) is None
    monkeypatch.delenv("CACHE_SERVICE_DIR")
    assert resolve_dir(None) == Path(os.environ.get("TMPDIR", "/tmp")) / \
        f"cache_service-{os.getuid()}"


def test_files_are_private_named_without_secrets_and_made_on_first_use(
        tmp_path: Path, fresh_redis_server: RedisServer) -> None:
    state = tmp_path / "state"
    redis_server = fresh_redis_server
    svc = CacheService(unique(), url=redis_server.url, state_dir=state, fallback="host")
    assert not state.exists()  # building a service touches no file
    svc.set("k", 1)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    names = sorted(p.name for p in state.iterdir())
    base = location_name(svc._target.location, state)
    assert {f"{base}.db", f"{base}.lock", f"{base}.page"} <= set(names)  # .recovery: at need
    assert svc.stats()["target"]["state_dir"] == str(state)
    other = CacheService(unique(), url=redis_server.url.replace("redis://", "redis://:pw@"),
                         state_dir=state)
    name = location_name(other._target.location, state)
    assert name != base  # a wrong password must not share the breaker of the right one
    assert "pw" not in name
    assert hashlib.sha256(b"pw").hexdigest()[:20] != name


def _outage_round_trip(svc: CacheService, proxy: ChaosProxy) -> None:
    svc.set("k", "old")
    proxy.cut()
    svc.delete("k")
    svc.set("other", "during")
    assert svc.get("k") is None
    assert svc.get("other") == "during"
    proxy.heal()
    assert eventually(svc.is_redis_available, timeout=3.0)
    assert svc.get("k") is None


def test_unusable_directory_means_per_process_state(
        tmp_path: Path, chaos_proxy: ChaosProxy, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    caplog.set_level(logging.WARNING, logger="cache_service")
    svc = CacheService(unique(), url=chaos_proxy.url, state_dir=blocker / "state", **FAST)
    _outage_round_trip(svc, chaos_proxy)
    target = svc.stats()["target"]
    assert (target["fallback"], target["state_dir"]) == ("process", "process")
    assert "a-file" in target["state_problem"]
    assert sum("per-process state" in r.getMessage() for r in caplog.records) == 1


@pytest.fixture
def tiny_mount(tmp_path: Path) -> Iterator[Any]:
    """Mount a small tmpfs (root only); ``remount(ro=...)``; unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    point = tmp_path / "mnt"
    point.mkdir()

    def mount(size: str = "256k", ro: bool = False) -> Path:
        options = f"size={size},mode=0700" + (",ro" if ro else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                       check=True, capture_output=True)
        return point

    yield mount
    subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


def test_read_only_directory_means_per_process_state(
        tiny_mount: Any, chaos_proxy: ChaosProxy) -> None:
    point = tiny_mount(ro=True)
    svc = CacheService(unique(), url=chaos_proxy.url, state_dir=point / "state", **FAST)
    _outage_round_trip(svc, chaos_proxy)
    assert svc.stats()["target"]["fallback"] == "process"


def test_full_disk_during_an_outage_degrades_to_per_process_state(
        tiny_mount: Any, chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture) -> None:
    point = tiny_mount(size="200k")
    caplog.set_level(logging.ERROR, logger="cache_service")
    svc = CacheService(unique(), url=chaos_proxy.url, state_dir=point, **FAST)
    svc.set("victim", "old")
    chaos_proxy.cut()
    svc.delete("victim")
    for i in range(400):  # 400 x 2 KB: far more than the 200 KB the disk holds
        svc.set(f"big:{i}", "x" * 2000)
        assert svc.get(f"big:{i}") == "x" * 2000
    svc.delete("big:399")
    assert svc.get("big:399") is None
    target = svc.stats()["target"]
    assert target["fallback"] == "process"
    assert "full" in target["state_problem"]
    assert sum("state shared by this host" in r.getMessage() for r in caplog.records) == 1
    chaos_proxy.heal()
    assert eventually(svc.is_redis_available, timeout=3.0)
    assert svc.get("victim") is None  # journaled before the disk filled up: replayed
    assert svc.get("big:399") is None
    assert fresh_redis_server.client().exists(svc.full_key("victim")) == 0


def test_shared_fallback_is_bounded(tmp_path: Path, chaos_proxy: ChaosProxy) -> None:
    svc = CacheService(unique(), url=chaos_proxy.url, state_dir=tmp_path, max_memory_entries=10,
                       max_memory_bytes=4000, **FAST)
    chaos_proxy.cut()
    svc.delete("open-the-breaker")
    for i in range(50):
        svc.set(f"k{i}", "v" * 100)
    target = svc.stats()["target"]
    assert target["memory_entries"] <= 10
    assert target["memory_bytes"] <= 4000
    assert target["memory_evictions"] >= 40
    assert svc.get("k49") == "v" * 100  # the newest stay
    assert svc.get("k0") is None
    chaos_proxy.heal()


def test_process_local_state_on_request(fresh_redis_server: RedisServer) -> None:
    svc = CacheService(unique(), url=fresh_redis_server.url, state_dir=False)
    svc.set("k", 1)
    assert svc.stats()["target"]["state_dir"] == "process"


def test_fork_gets_its_own_connections(tmp_path: Path, chaos_proxy: ChaosProxy) -> None:
    """A child forked after the state was opened (gunicorn --preload) shares the host state
    through its own descriptors and database connection."""
    code = f"""
import os, sys
from cache_service import CacheService
svc = CacheService("forked", url={chaos_proxy.url!r}, state_dir={str(tmp_path)!r},
                   breaker_min_backoff=0.05, breaker_max_backoff=0.2, socket_timeout=0.15,
                   connect_timeout=0.15)
svc.set("warm", 1)
svc._target.failed(ConnectionError("simulated"))
pid = os.fork()
if pid == 0:
    svc.set("from-child", "c")
    os._exit(0 if svc.get("from-child") == "c" else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert svc.get("from-child") == "c", "the parent sees the child's fallback write"
print("ok")
"""
    chaos_proxy.cut()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    chaos_proxy.heal()
    assert done.stdout.strip() == "ok", done.stderr
