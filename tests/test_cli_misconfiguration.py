"""The CLI names a misconfiguration as the library does (wrong password, NOAUTH, WRONGPASS,
NOPERM, a TLS mismatch) instead of saying "unreachable", on one line, without a secret."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from cache_service.cli import main

from .servers import RedisServer

pytestmark = pytest.mark.usefixtures("over_both_connections")

PASSWORD, USER, USER_PASSWORD = "cli-right-4d1f", "app", "cli-app-8e2b"
WRONG = "cli-wrong-77aa"
SECRETS = (PASSWORD, USER_PASSWORD, WRONG, "lim-pw-31")


@pytest.fixture(scope="module")
def locked_server() -> Iterator[RedisServer]:
    """The default user needs ``PASSWORD``; ACL user ``app`` ``USER_PASSWORD``; ACL user
    ``limited`` may GET and SET only (no PING)."""
    with RedisServer(password=PASSWORD, acl_user=(USER, USER_PASSWORD), name="cli-locked") as s:
        with s.client() as raw:
            raw.execute_command("ACL", "SETUSER", "limited", "on", ">lim-pw-31", "~*", "+get",
                                "+set")
        yield s


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"REDIS_URL": ""})


CASES = {
    "wrong password": ("redis://:{WRONG}@{addr}/0", "WRONGPASS", "password="),
    "no password": ("redis://{addr}/0", "NOAUTH", "password="),
    "wrong ACL password": ("redis://app:{WRONG}@{addr}/0", "WRONGPASS", "username="),
    "TLS to a plain server": ("rediss://:{PASSWORD}@{addr}/0", "does not speak TLS", "redis://"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["check", "ping", "info"])
def test_a_misconfiguration_is_named_not_unreachable(
        locked_server: RedisServer, case: str, command: str) -> None:
    template, code, setting = CASES[case]
    url = template.format(WRONG=WRONG, PASSWORD=PASSWORD,
                          addr=f"{locked_server.host}:{locked_server.port}")
    result = _invoke(command, "--redis-url", url)
    assert result.exit_code == 1, result.output
    output = result.stdout + result.stderr
    assert len(output.splitlines()) == 1, output
    assert "misconfigured" in output, output
    assert code in output, output
    assert setting in output, output
    assert "unreachable" not in output
    assert "Traceback" not in output
    assert not any(secret in output for secret in SECRETS), output


def test_a_command_the_acl_refuses_is_named(locked_server: RedisServer) -> None:
    url = f"redis://limited:lim-pw-31@{locked_server.host}:{locked_server.port}/0"
    result = _invoke("ping", "--redis-url", url)
    assert result.exit_code == 1, result.output
    assert "NOPERM" in result.stderr, result.stderr
    assert "user 'limited'" in result.stderr
    assert "unreachable" not in result.stderr
    assert "lim-pw-31" not in result.stderr


def test_the_right_credentials_are_reachable(locked_server: RedisServer) -> None:
    addr = f"{locked_server.host}:{locked_server.port}"
    for url in (f"redis://:{PASSWORD}@{addr}/0", f"redis://app:{USER_PASSWORD}@{addr}/0"):
        result = _invoke("check", "--redis-url", url)
        assert result.exit_code == 0, result.output
        assert "reachable" in result.stdout
        assert not any(secret in result.stdout for secret in SECRETS)
