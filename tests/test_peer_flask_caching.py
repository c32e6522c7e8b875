"""Flask-Caching's own test suite against our backend (``CACHE_TYPE`` = our factory): Redis up,
refused from the start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("flask_caching")

from tests.peer import fetch
from tests.peer.harness import MODES, refused_url, run_suite, summary
from tests.peer.skips import FLASK_CACHING
from tests.servers import RedisServer

# Flask-Caching's own skipif marks (Python 3.14 behaviour) skip these on older Pythons.
OWN_SKIPS = {"test_memoize_with_type_checking_annotation",
             "test_cached_with_type_checking_annotation",
             "test_memoize_unless_with_type_checking_annotation"}


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    with RedisServer(name="peer-flask-caching") as server:
        yield server


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", [
    # ~6-15 s each (a subprocess running ~200 tests). No restart mode: its expiry timing test
    # (test_generic_timeout) failed across a kill once; the kill-and-restart chaos of the same
    # backend is cachelib's suite's restart mode (test_peer_cachelib.py)
    mode for mode in MODES if mode != "restart"])
def test_flask_caching_own_tests(mode: str, private_server: RedisServer) -> None:
    suite = fetch.ensure("flask-caching")
    url = refused_url() if mode == "down" else private_server.url
    report = run_suite("run_pytest.py", ["flask_caching_suite.py", str(suite)], url, mode,
                       private_server)
    print(summary("flask-caching", mode, report))
    assert not report["failures"], report["failures"]
    assert report["exit"] == 0
    allowed = set(FLASK_CACHING[mode]) | OWN_SKIPS
    # a listed name skips all its parametrizations; ``test_x[param]`` one of them
    skipped = {name if name in allowed else name.split("[")[0] for name, _ in report["skipped"]}
    assert skipped <= allowed, report["skipped"]
    assert report["run"] >= 150
