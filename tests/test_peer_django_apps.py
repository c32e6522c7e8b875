"""Popular Django apps' own test suites on DjangoCache - django-ratelimit (all of it), Django
REST framework (its throttling tests), django-axes (its handler tests, the cache handler's
among them) and django-cachalot (all but its PostgreSQL and debug-toolbar tests): Redis up,
refused. Also what each app's cache check says of our backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("django")

from tests.peer import fetch
from tests.peer.harness import MODES, refused_url, run_suite, summary
from tests.peer.skips import DJANGO_APPS
from tests.servers import RedisServer

# app -> (its module, the distribution whose sdist holds the suite or None: it ships in the
# wheel, at least this many tests run, seconds from the first test to the first kill if run in the
# harness' restart mode: the short suites take 1-3 s on a quiet machine)
APPS = {
    "django-ratelimit": ("django_ratelimit", None, 50, 0.2),
    "djangorestframework": ("rest_framework", "djangorestframework", 29, 0.2),
    "django-axes": ("axes", "django-axes", 60, 1.0),
    "django-cachalot": ("cachalot", "django-cachalot", 180, 2.0),
}
# the warning each app's check gives for a backend not on its list (see the Django guide)
WARNS = {"django-ratelimit": ["django_ratelimit.W001"], "django-cachalot": ["cachalot.W001"]}


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    with RedisServer(name="peer-django-apps") as server:
        yield server


@pytest.mark.slow
@pytest.mark.timeout(600)
# Redis up and refused, as the issue asks; the kill-and-restart chaos of the backend under a
# framework is Django's own suite's restart mode (tests/test_peer_django.py): these apps' suites
# are too short to be killed mid-run reliably, and the suite's time budget is spent there.
@pytest.mark.parametrize("mode", [m for m in MODES if m != "restart"])
@pytest.mark.parametrize("app", list(APPS))
def test_django_app_suite(app: str, mode: str, private_server: RedisServer) -> None:
    module, dist, least, first_kill = APPS[app]
    pytest.importorskip(module)
    suite = str(fetch.ensure(dist)) if dist else "-"
    url = refused_url() if mode == "down" else private_server.url
    report = run_suite("run_django_app.py", [app, suite], url, mode, private_server,
                       timeout=500, first_kill=first_kill)
    print(summary(app, mode, report))
    assert not report["failures"], report["stderr"]
    assert not report["errors"], report["stderr"]
    skips = DJANGO_APPS.get(app, {}).get(mode, {})
    assert {name for name, _ in report["skipped"] if name in skips} == set(skips)
    assert report["run"] >= least
    assert report["checks"] == WARNS.get(app, [])
