"""FastAPI integration: the example app over httpx (in process and under uvicorn) and the
route decorator's HTTP semantics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.fastapi_app import FakeDB, create_app
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from cache_service import AsyncCacheService
from cache_service.integrations.fastapi import (
    HeadMiddleware,
    cache_response,
    close_on_shutdown,
    invalidate_path,
    provide,
)

from .helpers import unique
from .servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
Client = httpx.AsyncClient


def serve(app: FastAPI, cache: AsyncCacheService,
          body: Callable[[Client], Awaitable[None]]) -> None:
    """Run ``body`` with an httpx client on ``app`` (in process), then clean up."""

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            try:
                await body(client)
            finally:
                await cache.clear_all()
                await cache.aclose()

    asyncio.run(main())


@pytest.fixture
def cache(redis_server: RedisServer) -> AsyncCacheService:
    """An async service with a unique prefix on the suite's Redis."""
    return AsyncCacheService(unique("api"), url=redis_server.url)


# -- the example app --------------------------------------------------------------------------
def test_example_caches_users_and_invalidates_on_update(cache: AsyncCacheService) -> None:
    db = FakeDB()
    app = create_app(cache, db)

    async def body(client: Client) -> None:
        first = await client.get("/users/1")
        assert first.status_code == 200
        assert first.json()["name"] == "John"
        assert (await client.get("/users/1")).json() == first.json()
        assert db.queries == 1
        assert await cache.get("user:1") == first.json()

        updated = await client.put("/users/1", json={"name": "Ann"})
        assert updated.json()["name"] == "Ann"
        assert (await client.get("/users/1")).json()["name"] == "Ann"
        assert db.queries == 3  # the update, then one reload

        assert (await client.get("/users/999")).status_code == 404
        assert (await client.get("/users/999")).status_code == 404
        assert db.queries == 5  # "not found" is not cached

    serve(app, cache, body)


def test_example_concurrent_misses_query_once(cache: AsyncCacheService) -> None:
    db = FakeDB()
    app = create_app(cache, db)

    async def body(client: Client) -> None:
        replies = await asyncio.gather(*(client.get("/users/2") for _ in range(50)))
        assert {r.status_code for r in replies} == {200}
        assert db.queries == 1
        listed = await asyncio.gather(*(client.get("/users") for _ in range(20)))
        assert [r.headers["x-cache"] for r in listed].count("MISS") == 1
        assert db.queries == 2

    serve(app, cache, body)


def test_example_list_route_headers_and_invalidation(cache: AsyncCacheService) -> None:
    db = FakeDB()
    app = create_app(cache, db)

    async def body(client: Client) -> None:
        miss = await client.get("/users")
        assert miss.headers["x-cache"] == "MISS"
        etag = miss.headers["etag"]
        hit = await client.get("/users")
        assert (hit.headers["x-cache"], hit.headers["etag"]) == ("HIT", etag)
        assert hit.json() == miss.json()
        not_modified = await client.get("/users", headers={"If-None-Match": etag})
        assert not_modified.status_code == 304
        assert not_modified.content == b""
        assert not_modified.headers["etag"] == etag
        assert db.queries == 1

        await client.put("/users/2", json={"name": "Jo"})
        fresh = await client.get("/users", headers={"If-None-Match": etag})
        assert (fresh.status_code, fresh.headers["x-cache"]) == (200, "MISS")
        assert fresh.headers["etag"] != etag
        assert "Jo" in fresh.text

    serve(app, cache, body)


def test_example_under_uvicorn(redis_server: RedisServer) -> None:
    """The example as deployed: a uvicorn process on Redis from REDIS_URL."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_server.url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-X", "dev", "-m", "uvicorn", "examples.fastapi_app:app",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get("/users/1")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.1)
            assert client.get("/users/1").json()["name"] == "John"
            assert [client.get("/users").headers["x-cache"] for _ in range(2)] == [
                "MISS", "HIT"]
            assert client.put("/users/1", json={"name": "Ann"}).status_code == 200
            assert client.get("/users/1").json()["name"] == "Ann"
            assert client.get("/users").headers["x-cache"] == "MISS"
            got = client.get("/users")
            head = client.head("/users")  # through a real server: headers only, the GET's entry
            assert (head.status_code, head.content, head.headers["x-cache"]) == (200, b"", "HIT")
            assert head.headers["etag"] == got.headers["etag"]
            assert head.headers["content-length"] == str(len(got.content))
            not_modified = client.head("/users", headers={"If-None-Match": got.headers["etag"]})
            assert (not_modified.status_code, not_modified.content) == (304, b"")
        with redis_server.client() as raw:
            assert raw.exists("cs:api::user:1") == 1  # the global aio.api_cache, on REDIS_URL
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        with redis_server.client() as raw:
            for key in raw.scan_iter("cs:api::*"):
                raw.delete(key)
    assert proc.returncode == 0, err
    assert "unclosed" not in err.lower(), err  # the lifespan closed the connections
    assert "Application shutdown complete" in err


# -- the route decorator ------------------------------------------------------------------------
class Item(BaseModel):
    id: int
    name: str


def test_key_is_method_path_and_sorted_query(cache: AsyncCacheService) -> None:
    app = FastAPI()
    calls: list[str] = []

    @app.get("/items")
    @cache_response(ttl=60, cache=cache)
    async def items(a: int = 0, b: int = 0) -> dict[str, int]:
        calls.append(f"{a},{b}")
        return {"sum": a + b}

    async def body(client: Client) -> None:
        assert (await client.get("/items?a=1&b=2")).headers["x-cache"] == "MISS"
        assert (await client.get("/items?b=2&a=1")).headers["x-cache"] == "HIT"
        assert (await client.get("/items?a=2&b=1")).headers["x-cache"] == "MISS"
        assert (await client.get("/items?a=2&b=1")).json() == {"sum": 3}
        assert calls == ["1,2", "2,1"]
        await items.invalidate()  # type: ignore[attr-defined]
        assert (await client.get("/items?a=1&b=2")).headers["x-cache"] == "MISS"

    serve(app, cache, body)


def test_client_no_cache_recomputes_and_no_store_bypasses(cache: AsyncCacheService) -> None:
    app = FastAPI()
    version = 0

    @app.get("/v")
    @cache_response(ttl=60, cache=cache)
    async def current() -> dict[str, int]:
        return {"version": version}

    async def body(client: Client) -> None:
        nonlocal version
        assert (await client.get("/v")).json() == {"version": 0}
        version = 1
        assert (await client.get("/v")).json() == {"version": 0}
        reloaded = await client.get("/v", headers={"Cache-Control": "no-cache"})
        assert (reloaded.json(), reloaded.headers["x-cache"]) == ({"version": 1}, "MISS")
        assert (await client.get("/v")).json() == {"version": 1}  # and re-cached
        version = 2
        bypass = await client.get("/v", headers={"Cache-Control": "no-store, max-age=0"})
        assert bypass.json() == {"version": 2}
        assert (await client.get("/v")).json() == {"version": 1}  # no-store wrote nothing

    serve(app, cache, body)


def test_if_none_match_forms(cache: AsyncCacheService) -> None:
    app = FastAPI()

    @app.get("/x")
    @cache_response(cache=cache)
    async def x() -> list[int]:
        return [1, 2]

    async def body(client: Client) -> None:
        etag = (await client.get("/x")).headers["etag"]
        for header in (etag, f'W/{etag}', f'"other", {etag}', "*"):
            assert (await client.get("/x", headers={"If-None-Match": header})).status_code == 304
        assert (await client.get("/x", headers={"If-None-Match": '"other"'})).status_code == 200

    serve(app, cache, body)


def test_only_get_is_cached_and_responses_pass_through(cache: AsyncCacheService) -> None:
    app = FastAPI()
    posts = 0

    @app.post("/p")
    @cache_response(cache=cache)
    async def post() -> dict[str, int]:
        nonlocal posts
        posts += 1
        return {"n": posts}

    @app.get("/text")
    @cache_response(cache=cache)
    async def text() -> PlainTextResponse:
        return PlainTextResponse("plain")

    async def body(client: Client) -> None:
        assert [(await client.post("/p")).json()["n"] for _ in range(2)] == [1, 2]
        reply = await client.get("/text")
        assert (reply.text, "x-cache" in reply.headers) == ("plain", False)
        assert await cache.invalidate_pattern("*") == 0

    serve(app, cache, body)


def test_sync_endpoint_own_request_param_and_response_model(cache: AsyncCacheService) -> None:
    app = FastAPI()
    calls = 0

    @app.get("/items/{item_id}", response_model=Item)
    @cache_response(ttl=60, cache=cache)
    def item(item_id: int, request: Request) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        assert request.url.path == f"/items/{item_id}"
        return {"id": item_id, "name": "widget", "secret": "filtered by response_model"}

    async def body(client: Client) -> None:
        for expected in ("MISS", "HIT"):
            reply = await client.get("/items/5")
            assert reply.headers["x-cache"] == expected
            assert reply.json() == {"id": 5, "name": "widget"}
        assert calls == 1
        await client.get("/items/6")
        await item.invalidate("/items/5")  # type: ignore[attr-defined]
        assert (await client.get("/items/5")).headers["x-cache"] == "MISS"
        assert (await client.get("/items/6")).headers["x-cache"] == "HIT"
        await invalidate_path("/items/6", cache)
        assert (await client.get("/items/6")).headers["x-cache"] == "MISS"
        assert (await client.get("/items/5")).headers["x-cache"] == "HIT"

    serve(app, cache, body)


def test_custom_key_and_dependency_override(cache: AsyncCacheService,
                                            redis_server: RedisServer) -> None:
    other = AsyncCacheService(unique("other"), url=redis_server.url)
    dependency = provide(cache)
    app = FastAPI(lifespan=close_on_shutdown(cache))

    @app.get("/who")
    @cache_response(cache=cache, key=lambda request: request.headers.get("x-user", "anon"))
    async def who(request: Request,
                  service: AsyncCacheService = Depends(dependency),  # noqa: B008
                  ) -> dict[str, str]:
        return {"user": request.headers.get("x-user", "anon"), "prefix": service.prefix}

    app.dependency_overrides[dependency] = lambda: other

    async def body(client: Client) -> None:
        ann = await client.get("/who", headers={"x-user": "ann"})
        assert ann.json() == {"user": "ann", "prefix": other.prefix}
        assert (await client.get("/who?ignored=1", headers={"x-user": "ann"})).headers[
            "x-cache"] == "HIT"
        assert (await client.get("/who", headers={"x-user": "bob"})).headers["x-cache"] == "MISS"
        await other.aclose()

    serve(app, cache, body)


# -- HEAD ----------------------------------------------------------------------------------------
def head_app(cache: AsyncCacheService, *, middleware: bool = True) -> tuple[FastAPI, list[int]]:
    """An app with a cached GET route filtered by a response_model, counting computations."""
    app = FastAPI()
    if middleware:
        app.add_middleware(HeadMiddleware)
    calls: list[int] = []

    @app.get("/items/{item_id}", response_model=Item)
    @cache_response(ttl=60, cache=cache)
    async def item(item_id: int) -> dict[str, Any]:
        calls.append(item_id)
        return {"id": item_id, "name": "widget", "secret": "filtered by response_model"}

    @app.api_route("/both", methods=["GET", "HEAD"])
    @cache_response(ttl=60, cache=cache)
    async def both() -> dict[str, str]:
        calls.append(0)
        return {"route": "declares HEAD itself"}

    @app.head("/own-head")
    async def own_head() -> Response:
        return Response(headers={"x-handler": "head"})

    @app.get("/own-head")
    async def own_get() -> dict[str, str]:
        raise AssertionError("a route handling HEAD itself must get the HEAD")

    return app, calls


def test_head_after_get_is_a_hit_with_the_same_etag_and_no_body(cache: AsyncCacheService) -> None:
    app, calls = head_app(cache)

    async def body(client: Client) -> None:
        got = await client.get("/items/5")
        assert (got.headers["x-cache"], got.json()) == ("MISS", {"id": 5, "name": "widget"})
        head = await client.head("/items/5")
        assert (head.status_code, head.content, head.headers["x-cache"]) == (200, b"", "HIT")
        assert head.headers["etag"] == got.headers["etag"]
        assert head.headers["content-length"] == str(len(got.content))  # what GET sends
        assert head.headers["content-type"] == got.headers["content-type"]
        assert calls == [5]

    serve(app, cache, body)


def test_head_miss_fills_the_get_entry_and_conditional_head_gets_304(
        cache: AsyncCacheService) -> None:
    app, calls = head_app(cache)

    async def body(client: Client) -> None:
        head = await client.head("/items/7?b=2&a=1")
        assert (head.status_code, head.content, head.headers["x-cache"]) == (200, b"", "MISS")
        got = await client.get("/items/7?a=1&b=2")
        assert (got.headers["x-cache"], got.headers["etag"]) == ("HIT", head.headers["etag"])
        assert head.headers["content-length"] == str(len(got.content))
        etag = got.headers["etag"]
        for header in (etag, f"W/{etag}", "*"):
            not_modified = await client.head("/items/7?a=1&b=2",
                                             headers={"If-None-Match": header})
            assert (not_modified.status_code, not_modified.content) == (304, b"")
            assert not_modified.headers["etag"] == etag
        changed = await client.head("/items/7?a=1&b=2", headers={"If-None-Match": '"other"'})
        assert (changed.status_code, changed.content) == (200, b"")
        assert calls == [7]
        await invalidate_path("/items/7", cache)  # one entry for GET and HEAD
        assert (await client.head("/items/7?a=1&b=2")).headers["x-cache"] == "MISS"

    serve(app, cache, body)


def test_head_on_a_route_declaring_get_and_head(cache: AsyncCacheService) -> None:
    """``methods=["GET", "HEAD"]``: the route gets the HEAD itself, with GET's entry."""
    app, calls = head_app(cache)

    async def body(client: Client) -> None:
        got = await client.get("/both")
        head = await client.head("/both")
        assert (head.status_code, head.content, head.headers["x-cache"]) == (200, b"", "HIT")
        assert head.headers["etag"] == got.headers["etag"]
        assert head.headers["content-length"] == str(len(got.content))
        not_modified = await client.head("/both", headers={"If-None-Match": got.headers["etag"]})
        assert not_modified.status_code == 304
        assert calls == [0]

    serve(app, cache, body)


def test_head_middleware_leaves_head_routes_and_other_methods_alone(
        cache: AsyncCacheService) -> None:
    app, _ = head_app(cache)

    async def body(client: Client) -> None:
        own = await client.head("/own-head")
        assert (own.status_code, own.headers["x-handler"], own.content) == (200, "head", b"")
        assert (await client.post("/items/1")).status_code == 405
        missing = await client.head("/nowhere")
        assert (missing.status_code, missing.content) == (404, b"")

    serve(app, cache, body)


def test_without_the_middleware_fastapi_refuses_head_on_get_routes(
        cache: AsyncCacheService) -> None:
    """What ``HeadMiddleware`` is for (a server such as uvicorn drops HEAD bodies itself)."""
    app, _ = head_app(cache, middleware=False)

    async def body(client: Client) -> None:
        assert (await client.head("/items/1")).status_code == 405
        await client.get("/both")
        head = await client.head("/both")
        assert (head.status_code, head.headers["x-cache"]) == (200, "HIT")

    serve(app, cache, body)
