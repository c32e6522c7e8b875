"""The ``cache-service check`` command: in process (click's CliRunner) and as installed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cache_service.cli import main

from .servers import RedisServer, free_port

CLI = str(Path(sys.executable).with_name("cache-service"))
BAD_URLS = ["nonsense://x", "localhost:6379", "redis://h:notaport/0", "redis://h/notadb",
            "redis+sentinel://h:1", "redis+cluster://h:7000/2", "nonsense://:secret@x",
            "alice:secret@h:1", "redis://:secret@h/notadb", "redis://h/0\nsecond line"]


@pytest.fixture
def no_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    """A server whose ACL user needs a password (so a reachable URL carries a secret)."""
    with RedisServer(acl_user=("checker", "secret"), name="cli") as server:
        yield server


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["check", *args], env=env)


def run(*args: str, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return subprocess.run([CLI, "check", *args], capture_output=True, text=True, timeout=60,
                          check=False, env=env)


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: invalid Redis URL"), stderr
    assert "Traceback" not in stderr
    assert "secret" not in stderr
    return lines[0]


# -- in process --------------------------------------------------------------------------------
@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_redis_url_option_is_one_line_exit_2(url: str, no_redis_url: None) -> None:
    result = invoke("--redis-url", url)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "(--redis-url)" in one_error_line(result.stderr)


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_redis_url_env_is_one_line_exit_2(url: str) -> None:
    result = invoke(env={"REDIS_URL": url})
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "REDIS_URL" in one_error_line(result.stderr)


def test_option_wins_over_a_bad_env(redis_server: RedisServer) -> None:
    result = invoke("--redis-url", redis_server.url, env={"REDIS_URL": "nonsense://x"})
    assert (result.exit_code, result.stdout) == (0, f"Redis at {redis_server.url}: reachable\n")


def test_reachable_and_unreachable(redis_server: RedisServer, no_redis_url: None) -> None:
    result = invoke("--redis-url", redis_server.url)
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, f"Redis at {redis_server.url}: reachable\n", "")
    result = invoke(env={"REDIS_URL": redis_server.url})
    assert (result.exit_code, result.stdout) == (0, f"Redis at {redis_server.url}: reachable\n")
    port = free_port()
    result = invoke("--redis-url", f"redis://:secret@127.0.0.1:{port}/0")
    assert result.exit_code == 1
    assert result.output == f"in-memory: Redis unreachable at redis://***@127.0.0.1:{port}/0\n"


# -- the installed command -----------------------------------------------------------------------
def test_command_reachable(redis_server: RedisServer, password_server: RedisServer) -> None:
    out = run("--redis-url", redis_server.url)
    assert (out.returncode, out.stdout, out.stderr) == (
        0, f"Redis at {redis_server.url}: reachable\n", "")
    out = run(redis_url=password_server.url_with_credentials)
    assert out.returncode == 0, out.stderr
    port = password_server.port
    assert out.stdout == f"Redis at redis://checker:***@127.0.0.1:{port}/0: reachable\n"
    assert "secret" not in out.stdout
    assert out.stderr == ""


def test_command_unreachable_is_one_line_exit_1() -> None:
    port = free_port()
    for args, env in (((f"--redis-url=redis://:secret@127.0.0.1:{port}/0",), None),
                      ((), f"redis://alice:secret@127.0.0.1:{port}/0")):
        out = run(*args, redis_url=env)
        assert out.returncode == 1, out.stderr
        assert len((out.stdout + out.stderr).splitlines()) == 1, out.stdout + out.stderr
        assert out.stdout.startswith("in-memory: Redis unreachable at redis://")
        assert f"***@127.0.0.1:{port}/0" in out.stdout
        assert "secret" not in out.stdout + out.stderr


@pytest.mark.parametrize("url", ["nonsense://x", "redis://:secret@h/notadb", "alice:secret@h"])
def test_command_bad_url_is_one_line_exit_2(url: str) -> None:
    for out, named in ((run("--redis-url", url), "(--redis-url)"), (run(redis_url=url),
                                                                     "REDIS_URL")):
        assert out.returncode == 2, out.stderr
        assert out.stdout == ""
        assert named in one_error_line(out.stderr)


@pytest.mark.parametrize("url", ["nonsense://x", "redis://:secret@h/notadb"])
def test_demo_bad_url_is_one_line_exit_2(url: str, no_redis_url: None) -> None:
    for args, env in ((["--redis-url", url], None), ([], {"REDIS_URL": url})):
        result = CliRunner().invoke(main, ["demo", *args], env=env)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        one_error_line(result.stderr)


@pytest.mark.parametrize("reachable", [True, False])
def test_demo_runs_through(reachable: bool, redis_server: RedisServer) -> None:
    from rich.console import Console

    from cache_service.demo import run_demo

    console = Console(record=True, width=200)
    url = redis_server.url if reachable else "redis://127.0.0.1:1/0"
    assert run_demo(url, latency=0.001, console=console) == 0
    text = console.export_text()
    assert "5. Near cache" in text
    if reachable:
        assert "Store: Redis at" in text
        assert "from process memory:" in text
        assert "another client deleted it" in text
        assert text.rstrip().endswith("touches only its own prefix)")
    else:
        assert "in-memory: Redis unreachable" in text
        assert "skipped: the near cache needs Redis" in text
