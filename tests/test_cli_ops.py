"""The operator's commands (ping, info, keys, get, delete, invalidate, clear, stats, bench)
against real servers: in process (click's CliRunner) and as the installed command, including
a refused and a hung Redis (ChaosProxy): bounded time, one clear line, exit 1. The commands
run on Valkey as well (``each_server``, ``each_cluster``, ``each_sentinel``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cache_service import CacheService
from cache_service.cli import main
from cache_service.cli.write import PROGRESS_FROM

from .helpers import unique
from .servers import ChaosProxy, ClusterDeployment, RedisServer, SentinelDeployment, free_port

CLI = str(Path(sys.executable).with_name("cache-service"))
ROOT = Path(__file__).resolve().parent.parent
# The matrix, trimmed: these commands read and write as the others do, through subprocesses
# that cost seconds each, so they run on Redis only.
on_redis_only = pytest.mark.parametrize("each_server", ["redis"], indirect=True)


def invoke(*args: str, url: str | None = None, stdin: str | None = None) -> Result:
    env = {"REDIS_URL": url} if url else None
    return CliRunner().invoke(main, list(args), env=env, input=stdin)


def run(*args: str, url: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if url is not None:
        env["REDIS_URL"] = url
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)


@pytest.fixture
def filled(each_server: RedisServer) -> Iterator[tuple[str, CacheService]]:
    """A prefix holding 3 values of ours (one tagged), a foreign string, a foreign list and
    a corrupt payload."""
    prefix = unique("cli")
    svc = CacheService(prefix, url=each_server.url)
    svc.set("user:1", {"name": "Ann", "roles": ["admin"]})
    svc.set("user:2", "Bob", tags=["team"])
    svc.set("count", 5)
    with each_server.client() as raw:
        raw.set(svc.full_key("foreign"), b"not ours")
        raw.rpush(svc.full_key("list"), b"x")
        raw.set(svc.full_key("user:bad"), b"\xc5\x01\x01" + bytes(8) + b"{broken")
    yield prefix, svc
    with each_server.client() as raw:
        for key in raw.scan_iter(match=f"cs:{prefix}::*"):
            raw.delete(key)
    svc.close()


# -- ping / info ---------------------------------------------------------------------------------
def test_ping(each_server: RedisServer) -> None:
    result = invoke("ping", "--redis-url", each_server.url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"PONG from {each_server.url} in ")
    out = run("ping", url=each_server.url)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.startswith("PONG from")


def test_info(filled: tuple[str, CacheService], each_server: RedisServer) -> None:
    prefix, _ = filled
    result = invoke("info", url=each_server.url)
    assert result.exit_code == 0, result.output
    version = {"redis": "7.0", "valkey": "8.1"}[each_server.flavour]  # INFO's own name
    for expected in ("Server", each_server.flavour, version, "Topology", "standalone",
                     "Memory", "used", "Keys", f"prefix {prefix}"):
        assert expected in result.stdout
    line = next(line for line in result.stdout.splitlines() if f"prefix {prefix}" in line)
    assert line.split()[-1] == "6"  # by name: ours, foreign and corrupt alike
    out = run("info", "--redis-url", each_server.url)
    assert out.returncode == 0, out.stderr
    assert f"prefix {prefix}" in out.stdout


# -- keys / get ----------------------------------------------------------------------------------
def test_keys(filled: tuple[str, CacheService], each_server: RedisServer) -> None:
    prefix, _ = filled
    result = invoke("keys", prefix, "--redis-url", each_server.url)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}
    assert {"user:1", "user:2", "count", "foreign", "list", "user:bad"} <= set(rows)
    assert "json +tags" in rows["user:2"]
    assert "list" in rows["list"]
    assert "foreign" in rows["foreign"]
    assert "#" in rows["user:1"]  # writer#seq
    assert result.stdout.rstrip().endswith("6 key(s)")
    only = invoke("keys", prefix, "user:*", "--redis-url", each_server.url)
    assert only.stdout.rstrip().endswith("3 key(s)")
    paged = invoke("keys", prefix, "--page-size", "2", "--limit", "4",
                   "--redis-url", each_server.url)
    assert paged.exit_code == 0, paged.output
    assert paged.stdout.count("┏") == 2  # two pages of two
    assert "stopped at --limit 4" in paged.stdout
    out = run("keys", prefix, url=each_server.url)
    assert out.returncode == 0, out.stderr
    assert "6 key(s)" in out.stdout


@on_redis_only
def test_get(filled: tuple[str, CacheService], each_server: RedisServer) -> None:
    prefix, svc = filled
    ok = invoke("get", prefix, "user:1", "--redis-url", each_server.url)
    assert ok.exit_code == 0, ok.output
    for expected in ("ours", "json", "'Ann'", "'admin'", "ttl", svc.full_key("user:1")):
        assert expected in ok.stdout
    tagged = invoke("get", prefix, "user:2", "--redis-url", each_server.url)
    assert tagged.exit_code == 0
    assert "team" in tagged.stdout
    assert "'Bob'" in tagged.stdout
    foreign = invoke("get", prefix, "foreign", "--redis-url", each_server.url)
    assert foreign.exit_code == 1
    assert "foreign" in foreign.stdout
    assert "no cache_service header" in foreign.stdout
    corrupt = invoke("get", prefix, "user:bad", "--redis-url", each_server.url)
    assert corrupt.exit_code == 1
    assert "corrupt" in corrupt.stdout
    listed = invoke("get", prefix, "list", "--redis-url", each_server.url)
    assert listed.exit_code == 1
    assert "not a string value" in listed.stdout
    absent = run("get", prefix, "nope", url=each_server.url)
    assert absent.returncode == 1
    assert absent.stderr.strip() == (f"error: 'nope' not found under prefix {prefix!r} "
                                     f"(Redis key {svc.full_key('nope')!r})")
    out = run("get", prefix, "count", url=each_server.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("5")


def test_bad_prefix_is_a_usage_error(each_server: RedisServer) -> None:
    out = run("keys", "bad prefix!", url=each_server.url)
    assert out.returncode == 2
    assert out.stderr.startswith("error: invalid prefix")
    assert len(out.stderr.splitlines()) == 1


# -- delete / invalidate / clear -----------------------------------------------------------------
@on_redis_only
def test_delete(filled: tuple[str, CacheService], each_server: RedisServer) -> None:
    prefix, svc = filled
    result = invoke("delete", prefix, "user:1", "nope", "--redis-url", each_server.url)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"deleted 1 of 2 key(s) under prefix {prefix!r}\n"
    assert svc.get("user:1") is None
    out = run("delete", prefix, "count", url=each_server.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"deleted 1 of 1 key(s) under prefix {prefix!r}\n"
    assert run("delete", prefix, url=each_server.url).returncode == 2  # KEY... is required


def test_invalidate_counts_asks_and_spares_foreign_keys(
        filled: tuple[str, CacheService], each_server: RedisServer) -> None:
    prefix, svc = filled
    dry = invoke("invalidate", prefix, "*", "--dry-run", "--redis-url", each_server.url)
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines() == [
        f"4 key(s) of prefix {prefix!r} match '*' (2 foreign key(s) match too and will be "
        "left alone)", "dry run: nothing removed"]
    declined = invoke("invalidate", prefix, "user:*", "--redis-url", each_server.url,
                      stdin="n\n")
    assert declined.exit_code == 1
    assert "Remove 3 key(s)?" in declined.stdout
    assert declined.stderr == "error: aborted: nothing removed\n"
    assert svc.get("user:1") is not None
    agreed = invoke("invalidate", prefix, "user:*", "--redis-url", each_server.url,
                    stdin="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert agreed.stdout.splitlines()[-1] == "removed 3 key(s)"
    assert svc.get("user:1") is None
    assert svc.get("count") == 5
    out = run("invalidate", prefix, "c*", "--yes", url=each_server.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "removed 1 key(s)"
    assert svc.get("count") is None
    with each_server.client() as raw:
        assert raw.get(svc.full_key("foreign")) == b"not ours"
        assert raw.type(svc.full_key("list")) == b"list"


def test_clear(filled: tuple[str, CacheService], each_server: RedisServer) -> None:
    prefix, svc = filled
    out = run("clear", prefix, "--yes", url=each_server.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"4 key(s) under prefix {prefix!r} (2 foreign key(s) match too and will be left alone)",
        "removed 4 key(s)"]
    with each_server.client() as raw:
        assert sorted(raw.scan_iter(match=f"cs:{prefix}::*")) == sorted(
            [svc.full_key("foreign").encode(), svc.full_key("list").encode()])
    again = invoke("clear", prefix, "-y", "--redis-url", each_server.url)
    assert again.stdout == f"0 key(s) under prefix {prefix!r} (2 foreign key(s) match too " \
        "and will be left alone)\n"


def test_clear_large_run_shows_progress(redis_server: RedisServer) -> None:
    prefix = unique("many")
    svc = CacheService(prefix, url=redis_server.url)
    svc.set_many({f"k{i}": i for i in range(PROGRESS_FROM)})
    try:
        result = invoke("clear", prefix, "--yes", "--redis-url", redis_server.url)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[-1] == f"removed {PROGRESS_FROM} key(s)"
        assert svc.get("k1") is None
    finally:
        svc.clear_all()
        svc.close()


# -- bench ---------------------------------------------------------------------------------------
@on_redis_only
def test_bench_leaves_no_key(each_server: RedisServer) -> None:
    with each_server.client() as raw:
        before = set(raw.scan_iter(match="*"))
    out = run("bench", "--rounds", "2", "--calls", "50", url=each_server.url)
    assert out.returncode == 0, out.stderr
    assert "CacheService.get" in out.stdout
    assert "raw redis-py GET + orjson.loads" in out.stdout
    assert "removed" in out.stdout
    with each_server.client() as raw:
        after = set(raw.scan_iter(match="*"))
    assert not {k for k in after - before if b"cache-service-bench-" in k}


# -- refused and hung Redis ----------------------------------------------------------------------
COMMANDS = [("ping",), ("info",), ("keys", "p"), ("get", "p", "k"), ("delete", "p", "k"),
            ("invalidate", "p", "*", "--yes"), ("clear", "p", "--yes"), ("bench",)]


@pytest.mark.parametrize("mode", ["cut", "hang"])
def test_refused_and_hung_redis(chaos_proxy: ChaosProxy, mode: str) -> None:
    getattr(chaos_proxy, mode)()
    url = chaos_proxy.url.replace("redis://", "redis://:secret@")
    shown = chaos_proxy.url.replace("redis://", "redis://***@")
    for command in COMMANDS:
        started = time.monotonic()
        result = invoke(*command, "--redis-url", url, "--timeout", "0.3")
        elapsed = time.monotonic() - started
        assert result.exit_code == 1, (command, result.output)
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (command, result.stderr)
        assert lines[0].startswith(f"error: Redis unreachable at {shown}: "), lines[0]
        assert "secret" not in result.stderr
        assert elapsed < 3, (command, elapsed)
    started = time.monotonic()
    out = run("keys", "p", "--timeout", "0.3", url=url)
    assert time.monotonic() - started < 10
    assert out.returncode == 1
    assert out.stdout == ""
    assert len(out.stderr.splitlines()) == 1
    assert "Traceback" not in out.stderr
    assert "secret" not in out.stderr


def test_unreachable_port_subprocess() -> None:
    out = run("info", "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert out.returncode == 1
    assert out.stderr.startswith("error: Redis unreachable at")
    assert "Connection refused" in out.stderr


# -- a cluster: SCAN over every primary, removal per slot -----------------------------------------
def test_cluster_info_keys_get_clear(each_cluster: ClusterDeployment) -> None:
    url = each_cluster.cluster_url
    prefix = unique("clu")
    svc = CacheService(prefix, url=url, socket_timeout=2.0, connect_timeout=2.0)
    try:
        svc.set_many({f"k{i}": i for i in range(30)})
        info = invoke("info", "--redis-url", url, "--timeout", "2")
        assert info.exit_code == 0, info.output
        assert "cluster" in info.stdout
        assert f"prefix {prefix}" in info.stdout
        listed = invoke("keys", prefix, "--redis-url", url, "--timeout", "2")
        assert listed.exit_code == 0, listed.output
        assert listed.stdout.rstrip().endswith("30 key(s)")
        got = invoke("get", prefix, "k7", "--redis-url", url, "--timeout", "2")
        assert got.exit_code == 0, got.output
        assert got.stdout.rstrip().endswith("7")
        cleared = invoke("clear", prefix, "--yes", "--redis-url", url, "--timeout", "2")
        assert cleared.exit_code == 0, cleared.output
        assert cleared.stdout.splitlines()[-1] == "removed 30 key(s)"
        assert svc.get_many([f"k{i}" for i in range(30)]) == {}
    finally:
        svc.clear_all()
        svc.close()


def test_sentinel_ping_info_keys(each_sentinel: SentinelDeployment) -> None:
    # db 3: a target of its own. One made before a failover of the shared deployment (by
    # test_sentinel) meets the demoted primary on its first write and serves from the fallback
    # until it has asked the sentinels again (on Redis and Valkey alike).
    url = each_sentinel.url.removesuffix("/0") + "/3"
    prefix = unique("sen")
    svc = CacheService(prefix, url=url, socket_timeout=2.0, connect_timeout=2.0)
    try:
        svc.set("k", {"v": 1})
        assert invoke("ping", "--redis-url", url, "--timeout", "2").exit_code == 0
        info = invoke("info", "--redis-url", url, "--timeout", "2")
        assert info.exit_code == 0, info.output
        assert "sentinel" in info.stdout
        assert "master" in info.stdout  # the role of the server Sentinel named
        assert f"prefix {prefix}" in info.stdout
        listed = invoke("keys", prefix, "--redis-url", url, "--timeout", "2")
        assert listed.stdout.rstrip().endswith("1 key(s)"), listed.output
    finally:
        svc.clear_all()
        svc.close()
