"""cachelib's own backend tests against CachelibCache: Redis up, refused, killed and restarted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("cachelib")

from tests.peer import fetch
from tests.peer.harness import MODES, refused_url, run_suite, summary
from tests.peer.skips import CACHELIB
from tests.servers import RedisServer


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    with RedisServer(name="peer-cachelib") as server:
        yield server


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", MODES)
def test_cachelib_common_tests(mode: str, private_server: RedisServer) -> None:
    suite = fetch.ensure("cachelib")
    url = refused_url() if mode == "down" else private_server.url
    report = run_suite("run_pytest.py", ["cachelib_suite.py", str(suite)], url, mode,
                       private_server)
    print(summary("cachelib", mode, report))
    assert not report["failures"], report["failures"]
    assert report["exit"] == 0
    assert {name for name, _ in report["skipped"]} <= set(CACHELIB[mode]), report["skipped"]
    assert report["run"] >= 40
    if mode == "restart":
        assert len(report["chaos"]) >= 2, "the server was not killed during the run"
