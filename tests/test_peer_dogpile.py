"""dogpile.testing suites against the cache_service backend: Redis up, refused, restarted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("dogpile.cache")

from tests.peer.harness import MODES, refused_url, run_suite, summary
from tests.peer.skips import DOGPILE
from tests.servers import RedisServer


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    with RedisServer(name="peer-dogpile") as server:
        yield server


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", MODES)
def test_dogpile_generic_suites(mode: str, private_server: RedisServer) -> None:
    suite = "-"
    url = refused_url() if mode == "down" else private_server.url
    report = run_suite("run_pytest.py", ["dogpile_suite.py", suite], url, mode, private_server)
    print(summary("dogpile", mode, report))
    assert not report["failures"], report["failures"]
    assert report["exit"] == 0
    assert {name for name, _ in report["skipped"]} <= set(DOGPILE[mode]), report["skipped"]
    assert report["run"] >= 25
    if mode == "restart":
        assert len(report["chaos"]) >= 2, "the server was not killed during the run"
