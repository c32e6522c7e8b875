"""A hostile filesystem and a hostile neighbour: the state directory is ours or it is not used,
background recovery survives whatever the disk does, and host-shared expiry ignores the wall
clock. Every fault is made for real (another uid, symlinks, hard links, rm -rf, a descriptor
limit, garbage in the files) against real Redis servers."""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cache_service import CacheService
from cache_service._host.state import PAGE_BYTES, STATE, location_name
from cache_service._host.statedir import sweep
from cache_service.config import parse_url

from .helpers import FakeClock, eventually, unique
from .servers import ChaosProxy, RedisServer

FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.2,
        "socket_timeout": 0.15, "connect_timeout": 0.15}
NOBODY = 65534


def _python(code: str, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter (its own targets and host state); its stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _plant(url: str, directory: Path, key: str, value: str) -> None:
    """Leave in ``directory`` the host state of ``url`` with a fallback row ``key=value`` of
    the current outage, as another process would."""
    _python(f"""
        from cache_service import CacheService
        svc = CacheService("app", url={url!r}, state_dir={str(directory)!r},
                           breaker_min_backoff=60, breaker_max_backoff=60)
        svc._target.attach()
        svc._target.breaker.failure()
        svc.set({key!r}, {value!r})
        assert svc.get({key!r}) == {value!r}
        """)


def _use(url: str, directory: Path) -> None:
    """Leave in ``directory`` the host state of ``url`` as a process that used it with Redis
    up (nothing journaled) leaves it."""
    _python(f"""
        from cache_service import CacheService
        CacheService("app", url={url!r}, state_dir={str(directory)!r}).set("k", "v")
        """)


def _name(url: str, directory: Path | None = None) -> str:
    return location_name(parse_url(url), directory)


def _refused(svc: CacheService, caplog: pytest.LogCaptureFixture, why: str) -> None:
    target = svc.stats()["target"]
    assert (target["fallback"], target["state_dir"]) == ("process", "process"), target
    assert why in target["state_problem"], target["state_problem"]
    assert sum("per-process state" in r.getMessage() for r in caplog.records) == 1


# -- a hostile neighbour ---------------------------------------------------------------------------
def test_a_directory_of_another_user_with_planted_state_is_refused(
        tmp_path: Path, chaos_proxy: ChaosProxy, caplog: pytest.LogCaptureFixture) -> None:
    """Another uid made the directory first (0777) and planted a page and database in which
    ``role:42`` is theirs, plus symlinks to files of ours: nothing of it is used or written."""
    assert os.geteuid() == 0, "chown to another uid needs root (CI runs as root)"
    hostile = tmp_path / "hostile"
    _plant(chaos_proxy.url, hostile, "role:42", "planted")
    base = hostile / _name(chaos_proxy.url)
    victims = {}
    for suffix in (".lock", ".recovery", ".db-wal"):  # each a symlink to a file of ours
        victim = tmp_path / f"victim{suffix}"
        victim.write_bytes(b"precious")
        Path(f"{base}{suffix}").unlink(missing_ok=True)
        Path(f"{base}{suffix}").symlink_to(victim)
        victims[victim] = victim.stat()
    for path in (hostile, *hostile.iterdir()):
        os.lchown(path, NOBODY, NOBODY)
    hostile.chmod(0o777)
    before = {p.name: (p.lstat().st_mtime_ns, p.lstat().st_size) for p in hostile.iterdir()}

    caplog.set_level(logging.WARNING, logger="cache_service")
    svc = CacheService("app", url=chaos_proxy.url, state_dir=hostile, **FAST)
    assert svc.get("role:42") is None  # Redis up: nothing there
    chaos_proxy.cut()
    svc.delete("open-the-breaker")
    assert svc.get("role:42") is None  # Redis out: the planted fallback row is not ours
    svc.set("role:42", "mine")
    assert svc.get("role:42") == "mine"
    _refused(svc, caplog, "belongs to uid 65534")
    chaos_proxy.heal()
    assert eventually(svc.is_redis_available, timeout=3.0)
    assert {p.name: (p.lstat().st_mtime_ns, p.lstat().st_size)
            for p in hostile.iterdir()} == before
    for victim, st in victims.items():
        assert victim.read_bytes() == b"precious"
        assert victim.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("plant", ["world-writable", "symlinked-dir", "symlink", "hard-link",
                                   "foreign-file", "fifo"])
def test_planted_entries_in_a_directory_are_never_followed(
        tmp_path: Path, chaos_proxy: ChaosProxy, caplog: pytest.LogCaptureFixture,
        plant: str) -> None:
    """Each way of making a state path lead somewhere else: refused, the target untouched,
    the service works on per-process state."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    page = state / f"{_name(chaos_proxy.url)}.page"
    why = {"world-writable": "writable by group or others", "symlinked-dir": "symbolic link",
           "symlink": "Too many levels of symbolic links", "hard-link": "2 hard links",
           "foreign-file": "belongs to uid 65534", "fifo": "not a regular file"}[plant]
    if plant == "world-writable":
        state.chmod(0o777)
    elif plant == "symlinked-dir":
        state.rmdir()
        state.symlink_to(tmp_path)  # a directory of ours, reached through a link
    elif plant == "symlink":
        page.symlink_to(victim)
    elif plant == "hard-link":
        os.link(victim, page)
    elif plant == "foreign-file":
        page.write_bytes(b"\0" * PAGE_BYTES)
        os.chown(page, NOBODY, NOBODY)
    else:
        os.mkfifo(page, 0o600)
    caplog.set_level(logging.WARNING, logger="cache_service")
    svc = CacheService(unique(), url=chaos_proxy.url, state_dir=state, **FAST)
    svc.set("k", "old")
    chaos_proxy.cut()
    svc.delete("k")
    assert svc.get("k") is None
    _refused(svc, caplog, why)
    chaos_proxy.heal()
    assert eventually(svc.is_redis_available, timeout=3.0)
    assert svc.get("k") is None
    assert victim.read_bytes() == b"precious"
    assert not list(tmp_path.glob("*.lock"))
    assert not list(tmp_path.glob("*.db"))


def test_every_file_is_private_sqlite_journal_files_included(
        tmp_path: Path, chaos_proxy: ChaosProxy) -> None:
    old = os.umask(0o022)
    try:
        svc = CacheService(unique(), url=chaos_proxy.url, state_dir=tmp_path / "s", **FAST)
        chaos_proxy.cut()
        for i in range(20):
            svc.delete(f"k{i}")
            svc.set(f"v{i}", "x" * 100)
        assert eventually(lambda: any((tmp_path / "s").glob("*.recovery")))
    finally:
        os.umask(old)
        chaos_proxy.heal()
    assert eventually(svc.is_redis_available, timeout=3.0)
    names = {p.name.split(".", 1)[1]: stat.S_IMODE(p.lstat().st_mode)
             for p in (tmp_path / "s").iterdir()}
    assert set(names) == {"page", "lock", "recovery", "db", "db-wal", "db-shm"}
    assert set(names.values()) == {0o600}
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700


# -- two unix sockets --------------------------------------------------------------------------
def test_two_unix_sockets_have_their_own_state_and_never_replay_on_each_other(
        tmp_path: Path) -> None:
    with RedisServer(unixsocket=True) as a, RedisServer(unixsocket=True) as b:
        assert a.unixsocket
        assert b.unixsocket
        url_a, url_b = f"unix://{a.unixsocket}", f"unix://{b.unixsocket}"
        assert _name(url_a) != _name(url_b)
        prefix = unique()
        svc_a = CacheService(prefix, url=url_a, state_dir=tmp_path, **FAST)
        svc_b = CacheService(prefix, url=url_b, state_dir=tmp_path, **FAST)
        svc_a.set("k", "a-old")
        svc_b.set("k", "b-value")
        a.freeze()
        try:
            svc_a.delete("k")  # journaled for A only
            assert svc_a.get("k") is None
            assert svc_b.is_redis_available()  # A's outage is not B's
            assert svc_b.get("k") == "b-value"
            svc_b.set("other", "b")
            assert svc_b.get("other") == "b"
            assert svc_b.stats()["target"]["journal_size"] == 0
        finally:
            a.thaw()
        assert eventually(svc_a.is_redis_available, timeout=3.0)
        assert svc_a.get("k") is None
        assert a.client().exists(svc_a.full_key("k")) == 0  # replayed on A
        assert svc_b.get("k") == "b-value"  # and never on B
        assert b.client().get(svc_b.full_key("k")) is not None
        files = {p.name.split(".")[0] for p in tmp_path.iterdir()}
        assert files == {_name(url_a), _name(url_b)}


@pytest.mark.parametrize(("one", "other"), [
    ("unix:///run/a.sock", "unix:///run/b.sock"),
    ("unix:///run/a.sock?db=0", "unix:///run/a.sock?db=1"),
    ("unix://alice:x@/run/a.sock", "unix://bob:x@/run/a.sock"),
    ("redis://h:1/0", "rediss://h:1/0"),
    ("redis://h:1/0", "redis://h:2/0"),
    ("redis+sentinel://s1:1,s2:2/one/0", "redis+sentinel://s1:1,s2:2/two/0"),
    ("redis+sentinel://s1:1,s2:2/one/0", "redis+sentinel://s1:1,s3:2/one/0"),
    ("redis+cluster://n1:1,n2:2/0", "redis+cluster://n1:1,n3:2/0"),
    ("redis+cluster://n1:1,n2:2/0", "redis+cluster://n1:1/0"),
])
def test_file_names_tell_every_different_redis_apart(one: str, other: str) -> None:
    assert _name(one) != _name(other)


def test_file_names_tell_credentials_apart_but_not_seed_order() -> None:
    """A wrong password must not share the breaker of the right one (the name holds a keyed
    fingerprint of the credentials: see test_credentials_identity)."""
    assert _name("redis://:pw1@h:1/0") != _name("redis://:pw2@h:1/0")
    assert _name("redis://:pw1@h:1/0") == _name("redis://:pw1@h:1/0")
    assert _name("redis+cluster://n1:1,n2:2/0") == _name("redis+cluster://n2:2,n1:1/0")


# -- the directory fails under a running process -------------------------------------------------
def test_directory_removed_during_an_outage_the_process_gets_back_on_redis(
        tmp_path: Path, chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    svc = CacheService(unique(), url=chaos_proxy.url, state_dir=state, **FAST)
    svc.set("k", "old")
    svc.set("kept", "yes")
    chaos_proxy.cut()
    svc.delete("k")
    assert svc.get("k") is None
    shutil.rmtree(state)  # a /tmp cleaner
    time.sleep(0.5)  # several recovery rounds meet the missing directory
    svc.set("during", "d")
    svc.delete("kept")
    assert svc.get("k") is None
    assert svc.get("kept") is None
    chaos_proxy.heal()
    assert eventually(svc.is_redis_available, timeout=5.0)
    raw = fresh_redis_server.client()
    assert raw.exists(svc.full_key("k"), svc.full_key("kept")) == 0  # both replayed
    assert svc.get("k") is None
    assert svc.get("kept") is None
    target = svc.stats()["target"]
    assert target["fallback"] == "process"
    assert target["state_problem"]
    # a later outage and recovery work on the per-process state
    chaos_proxy.cut()
    svc.delete("during")
    chaos_proxy.heal()
    assert eventually(svc.is_redis_available, timeout=5.0)
    assert raw.exists(svc.full_key("during")) == 0


def test_directory_removed_while_redis_is_up_then_an_outage(
        tmp_path: Path, chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer) -> None:
    state = tmp_path / "state"
    svc = CacheService(unique(), url=chaos_proxy.url, state_dir=state, **FAST)
    svc.set("k", "old")
    shutil.rmtree(state)
    chaos_proxy.cut()
    svc.delete("k")
    assert svc.get("k") is None
    chaos_proxy.heal()
    assert eventually(svc.is_redis_available, timeout=5.0)
    assert fresh_redis_server.client().exists(svc.full_key("k")) == 0
    assert svc.get("k") is None


def test_out_of_file_descriptors_recovery_waits_and_gets_back(
        tmp_path: Path, chaos_proxy: ChaosProxy) -> None:
    """No descriptor left while Redis comes back: calls are answered, the recovery thread
    lives; once descriptors are free again it replays and closes the breaker, host state kept."""
    code = f"""
        import os, resource, sys, threading, time
        from cache_service import CacheService
        svc = CacheService("emfile", url={chaos_proxy.url!r}, state_dir={str(tmp_path)!r},
                           breaker_min_backoff=0.05, breaker_max_backoff=0.2,
                           socket_timeout=0.15, connect_timeout=0.15)
        svc.set("k", "old")
        print("cut", flush=True); sys.stdin.readline()
        svc.delete("k")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
        hog = []
        try:
            while True:
                hog.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        print("exhausted", flush=True); sys.stdin.readline()  # Redis is back meanwhile
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert svc.get("k") is None
            svc.set("during", "d")
            time.sleep(0.05)
        alive = [t for t in threading.enumerate() if t.name.startswith("cache_service-recovery")]
        assert alive and svc._target.recovery.running, alive
        assert svc._target.breaker.is_open
        for fd in hog:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        deadline = time.monotonic() + 5
        while not svc.is_redis_available() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert svc.is_redis_available()
        assert svc.get("k") is None
        print(svc.stats()["target"]["fallback"], flush=True)
        """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "cut"
        chaos_proxy.cut()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "exhausted"
        chaos_proxy.heal()
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "host", err
    assert resource.getrlimit(resource.RLIMIT_NOFILE)  # (this process's limit never moved)


# -- damaged files ---------------------------------------------------------------------------------
def _damage(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(os.urandom(PAGE_BYTES))
    elif how == "truncated":
        path.write_bytes(b"\x01" * 10)
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a page of ours whose breaker state is no state at all
        page = bytearray(path.read_bytes())
        page[STATE * 8:STATE * 8 + 8] = (77).to_bytes(8, "little")
        path.write_bytes(bytes(page))


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty", "bad-state"])
def test_a_damaged_page_starts_anew_and_serves_nothing_planted(
        tmp_path: Path, chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer,
        how: str) -> None:
    _plant(chaos_proxy.url, tmp_path, "k", "from-before")
    _damage(tmp_path / f"{_name(chaos_proxy.url)}.page", how)
    svc = CacheService("app", url=chaos_proxy.url, state_dir=tmp_path, **FAST)
    svc.set("k", "fresh")
    assert svc.get("k") == "fresh"
    assert svc.stats()["target"]["fallback"] == "host"
    chaos_proxy.cut()
    svc.delete("k")
    assert svc.get("k") is None
    chaos_proxy.heal()
    assert eventually(svc.is_redis_available, timeout=3.0)
    assert fresh_redis_server.client().exists(svc.full_key("k")) == 0


@pytest.mark.parametrize("how", ["garbage", "truncated", "header-only"])
def test_a_damaged_database_means_per_process_state(
        tmp_path: Path, chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture, how: str) -> None:
    _plant(chaos_proxy.url, tmp_path, "k", "from-before")
    db = tmp_path / f"{_name(chaos_proxy.url)}.db"
    data = db.read_bytes()
    db.write_bytes({"garbage": os.urandom(len(data)), "truncated": data[:100],
                    "header-only": data[:16] + os.urandom(len(data) - 16)}[how])
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    caplog.set_level(logging.WARNING, logger="cache_service")
    svc = CacheService("app", url=chaos_proxy.url, state_dir=tmp_path, **FAST)
    svc.set("k", "v")
    chaos_proxy.cut()
    assert svc.get("k") is None or svc.get("k") == "v"  # never "from-before"
    svc.delete("k")
    assert svc.get("k") is None
    assert svc.stats()["target"]["fallback"] == "process"
    assert sum("per-process state" in r.getMessage() for r in caplog.records) == 1
    chaos_proxy.heal()
    assert eventually(svc.is_redis_available, timeout=3.0)
    assert fresh_redis_server.client().exists(svc.full_key("k")) == 0


# -- cleanup of unused locations -------------------------------------------------------------------
def _age(directory: Path, name: str, days: float) -> None:
    when = time.time() - days * 86400
    for path in directory.glob(f"{name}.*"):
        os.utime(path, (when, when), follow_symlinks=False)


def test_files_of_locations_unused_for_a_week_are_removed_safely(
        tmp_path: Path, fresh_redis_server: RedisServer) -> None:
    base = fresh_redis_server.url[: -len("/0")]
    unused, pending, held, recent = (f"{base}/{db}" for db in (1, 2, 3, 4))
    for url in (unused, held, recent):
        _use(url, tmp_path)
    _python(f"""
        from cache_service import CacheService
        svc = CacheService("app", url={pending!r}, state_dir={str(tmp_path)!r},
                           breaker_min_backoff=60, breaker_max_backoff=60)
        svc._target.attach()
        svc._target.breaker.failure()
        svc.delete("journaled")
        """)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from cache_service import CacheService
            svc = CacheService("app", url={held!r}, state_dir={str(tmp_path)!r})
            svc._target.attach()
            print("attached", flush=True); sys.stdin.readline()
            """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "attached"
        for url in (unused, pending, held):
            _age(tmp_path, _name(url), days=8)
        _age(tmp_path, _name(recent), days=6)
        removed = sweep(tmp_path, keep="")
    finally:
        holder.communicate("\n", timeout=30)
    assert removed == [_name(unused)]
    left = {p.name.split(".")[0] for p in tmp_path.iterdir()}
    assert left == {_name(pending), _name(held), _name(recent)}
    # the journal is still there, and is replayed by the next process of that location
    out = _python(f"""
        from cache_service import CacheService
        svc = CacheService("app", url={pending!r}, state_dir={str(tmp_path)!r},
                           breaker_min_backoff=0.05, breaker_max_backoff=0.2)
        svc._target.attach()
        print(svc.stats()["target"]["journal_size"])
        """)
    assert out.strip() == "1"


def test_a_process_sweeps_when_it_attaches(tmp_path: Path,
                                           fresh_redis_server: RedisServer) -> None:
    old = fresh_redis_server.url[: -len("/0")] + "/5"
    _use(old, tmp_path)
    _age(tmp_path, _name(old), days=8)
    _python(f"""
        from cache_service import CacheService
        CacheService("app", url={fresh_redis_server.url!r}, state_dir={str(tmp_path)!r}).set(
            "k", 1)
        """)
    assert {p.name.split(".")[0] for p in tmp_path.iterdir()} == {_name(fresh_redis_server.url)}


def test_the_unused_time_is_an_environment_setting(tmp_path: Path,
                                                   fresh_redis_server: RedisServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    old = fresh_redis_server.url[: -len("/0")] + "/6"
    _use(old, tmp_path)
    _age(tmp_path, _name(old), days=2)
    assert sweep(tmp_path, keep="") == []
    monkeypatch.setenv("CACHE_SERVICE_STATE_MAX_AGE", str(86400))
    assert sweep(tmp_path, keep="") == [_name(old)]
    assert not list(tmp_path.iterdir())


# -- clocks ----------------------------------------------------------------------------------------
_SKEWED = """
import json, time
_real, _real_ns = time.time, time.time_ns
time.time = lambda: _real() + {skew}
time.time_ns = lambda: _real_ns() + int({skew} * 1e9)
from cache_service import CacheService
svc = CacheService("app", url={url!r}, state_dir={state!r}, {opts})
print(json.dumps([svc.get("short"), svc.get("long"), svc.stats()["target"]["backend"]]))
"""


def test_fallback_expiry_ignores_wall_clock_steps(tmp_path: Path,
                                                  chaos_proxy: ChaosProxy) -> None:
    """Rows written by one process are read by processes whose wall clock is an hour behind
    or ahead: an expired row stays expired, a live one stays live (the host clock is one)."""
    chaos_proxy.cut()
    opts = "breaker_min_backoff=60, breaker_max_backoff=60"
    _python(f"""
        from cache_service import CacheService
        svc = CacheService("app", url={chaos_proxy.url!r}, state_dir={str(tmp_path)!r}, {opts})
        svc.get("open-the-breaker")
        svc.set("short", "v", ttl=0.5)
        svc.set("long", "v", ttl=600)
        """)
    time.sleep(0.8)
    for skew in (-3600, 3600, -86400 * 365):
        out = _python(_SKEWED.format(skew=skew, url=chaos_proxy.url, state=str(tmp_path),
                                     opts=opts))
        assert json.loads(out) == [None, "v", "memory"], skew
    chaos_proxy.heal()


def test_swr_freshness_follows_the_wall_clock_not_the_memory_clock(
        redis_server: RedisServer) -> None:
    memory_clock = FakeClock()
    cache = CacheService(unique(), url=redis_server.url, clock=memory_clock)
    cache.get_or_set("k", lambda: "v", ttl=10, stale_while_revalidate=30)
    memory_clock.advance(3600)
    assert cache.get("k") == "v"  # still fresh by the wall clock
    wall = FakeClock(time.time())
    walled = CacheService(unique(), url=redis_server.url, wall_clock=wall)
    walled.get_or_set("k", lambda: "v", ttl=10, stale_while_revalidate=30)
    wall.advance(11)
    assert walled.get("k", "miss") == "miss"


def test_host_state_is_not_shared_with_a_planted_page_of_another_boot(
        tmp_path: Path, chaos_proxy: ChaosProxy) -> None:
    """A page kept from another boot (files on a disk that outlived a reboot): its rows were
    timed on that boot's clock, so none of them is served."""
    _plant(chaos_proxy.url, tmp_path, "k", "old-boot")
    page = tmp_path / f"{_name(chaos_proxy.url)}.page"
    data = bytearray(page.read_bytes())
    data[12 * 8:13 * 8] = (12345).to_bytes(8, "little")  # another boot's id
    page.write_bytes(bytes(data))
    chaos_proxy.cut()
    svc = CacheService("app", url=chaos_proxy.url, state_dir=tmp_path, **FAST)
    svc.get("open-the-breaker")
    assert svc.get("k") is None
    assert svc.stats()["target"]["fallback"] == "host"
    chaos_proxy.heal()
