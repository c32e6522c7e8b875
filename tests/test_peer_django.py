"""Django's own BaseCacheTests against DjangoCache: Redis up, refused, killed and restarted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("django")

from tests.peer import fetch
from tests.peer.harness import MODES, refused_url, run_suite, summary
from tests.peer.skips import DJANGO
from tests.servers import RedisServer

# Django's mixin skips these itself for backends without culling (as for its RedisCache).
DJANGO_OWN_SKIPS = {"test_cull", "test_zero_cull", "test_cull_delete_when_store_empty"}


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    with RedisServer(name="peer-django") as server:
        yield server


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", MODES)
def test_django_base_cache_tests(mode: str, private_server: RedisServer) -> None:
    suite = fetch.ensure("django")
    url = refused_url() if mode == "down" else private_server.url
    report = run_suite("run_django.py", [str(suite)], url, mode, private_server)
    print(summary("django", mode, report))
    assert not report["failures"], report["stderr"]
    assert not report["errors"], report["stderr"]
    allowed = set(DJANGO[mode]) | DJANGO_OWN_SKIPS
    assert {name for name, _ in report["skipped"]} <= allowed, report["skipped"]
    assert report["run"] >= 50
    if mode == "restart":
        assert len(report["chaos"]) >= 2, "the server was not killed during the run"
