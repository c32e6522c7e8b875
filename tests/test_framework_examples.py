"""The example apps under examples/ run, with Redis up and with Redis refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peer.harness import refused_url
from tests.servers import RedisServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

DJANGO_CLIENT = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ["DJANGO_SETTINGS_MODULE"] = "django_project.settings"
import django
django.setup()
from django.core.cache import cache
from django.test import Client
cache.clear()
c = Client()
pages = [c.get("/report/").content.decode() for _ in range(3)]
visits = [c.get("/visits/home/", HTTP_USER_AGENT="ua-%d" % i).json() for i in range(3)]
print(json.dumps({"pages": pages, "visits": visits, "redis": cache.service.is_redis_available()}))
"""


@pytest.mark.parametrize("up", [True, False], ids=["redis-up", "redis-refused"])
def test_django_example(redis_server: RedisServer, up: bool) -> None:
    pytest.importorskip("django")
    url = redis_server.url if up else refused_url()
    proc = subprocess.run([sys.executable, "-c", DJANGO_CLIENT, str(EXAMPLES)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "CACHE_URL": url})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["redis"] is up
    assert len(set(out["pages"])) == 1  # cache_page: rendered once, then served from cache
    assert out["pages"][0].startswith("report #1 ")
    assert [v["visits"] for v in out["visits"]] == [1, 2, 3]
    assert out["visits"][-1]["last_agent"] == "ua-2"
    if up:  # the page really is in Redis, under the example's namespace
        keys = redis_server.client().keys("cs:django:example::*")
        assert any(b"views.decorators.cache.cache_page" in k for k in keys)


@pytest.mark.parametrize("up", [True, False], ids=["redis-up", "redis-refused"])
def test_flask_example(redis_server: RedisServer, up: bool) -> None:
    pytest.importorskip("flask_caching")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import flask_app
    finally:
        sys.path.remove(str(EXAMPLES))
    url = redis_server.url if up else refused_url()
    app, cache = flask_app.create_app(url)
    cache.clear()
    client = app.test_client()
    first, second = client.get("/").text, client.get("/").text
    assert first == second
    assert first.startswith("home #1 ")
    a, b = client.get("/square/12").json, client.get("/square/12").json
    assert a == b == {"n": 12, "square": 144, "computed": 1}
    assert client.post("/square/12/forget").text == "ok"
    assert client.get("/square/12").json["computed"] == 2
    assert cache.cache.service.is_redis_available() is up
    if up:
        assert redis_server.client().keys("cs:cachelib::flask-example:*")


@pytest.mark.parametrize("up", [True, False], ids=["redis-up", "redis-refused"])
def test_litestar_example(redis_server: RedisServer, up: bool) -> None:
    pytest.importorskip("litestar")
    from litestar.testing import TestClient

    sys.path.insert(0, str(EXAMPLES))
    try:
        import litestar_app
    finally:
        sys.path.remove(str(EXAMPLES))
    url = redis_server.url if up else refused_url()
    app = litestar_app.create_app(url)
    with TestClient(app=app) as client:
        first, second = client.get("/report").json(), client.get("/report").json()
        assert first == second
        assert first["render"] == 1
        assert [client.get("/search?q=a").status_code for _ in range(6)] == [200] * 5 + [429]
        assert client.post("/login?user=ann").json() == {"ok": "logged in"}
        assert client.get("/me").json() == {"user": "ann"}
    if up:
        keys = {k.decode() for k in redis_server.client().keys("cs:litestar-example::*")}
        assert {k.split("::", 1)[1].split(":", 1)[0] for k in keys} >= {
            "response_cache", "rate_limit", "sessions"}


@pytest.mark.parametrize("up", [True, False], ids=["redis-up", "redis-refused"])
def test_dogpile_example(redis_server: RedisServer, up: bool) -> None:
    pytest.importorskip("dogpile.cache")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import dogpile_region
    finally:
        sys.path.remove(str(EXAMPLES))
    url = redis_server.url if up else refused_url()
    dogpile_region.configure(url, "example-signing-key-0123456789")
    load = dogpile_region.load_user
    load.invalidate(7)
    first, again = load(7), load(7)
    assert first == again
    assert first["name"] == "user 7"
    load.invalidate(7)
    assert load(7)["load"] == first["load"] + 1
    assert dogpile_region.region.backend.service.is_redis_available() is up
    if up:
        assert redis_server.client().keys("cs:dogpile-example::*")
