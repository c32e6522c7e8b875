"""Route caching never hands one user's response to another: a FastAPI app with per-user,
cookie, public and cookie-setting routes, requested by Alice and Bob (bearer tokens), Carol and
Dave (session cookies), Mallory (an unrelated cookie) and anonymous clients in every order
Hypothesis finds, with Redis up and with Redis down (the fallback serves); every reply is
checked against a model of what may be cached, and for ``Cache-Control``/``Vary``/``X-Cache``."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_service import AsyncCacheService, ConfigurationError
from cache_service.integrations.fastapi import cache_response

from .helpers import unique
from .peer.harness import refused_url
from .servers import RedisServer

USERS: dict[str, dict[str, str]] = {
    "alice": {"Authorization": "Bearer alice-token"},
    "bob": {"Authorization": "Bearer bob-token"},
    "carol": {"Cookie": "session=carol-sid"},
    "dave": {"Cookie": "session=dave-sid; theme=dark"},
    "mallory": {"Cookie": "_ga=GA1.2.3"},
    "alice-cookie": {"Authorization": "Bearer alice-token", "Cookie": "session=carol-sid"},
    "anonymous": {},
    "empty-cookie": {"Cookie": "  "},
}
ROUTES = ("/me", "/me-varied", "/cart", "/catalogue", "/login", "/private", "/custom")
PUBLIC = "public, max-age=60"
PRIVATE = "private, no-cache"
ALL = "Authorization, Cookie"


def who(request: Request) -> str:
    """Who the request is, as an endpoint of this app decides: bearer token, else session."""
    auth = request.headers.get("authorization", "")
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ")
    return request.cookies.get("session", "anonymous")


def users_app(cache: AsyncCacheService) -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    counter = itertools.count()
    calls: list[str] = []

    def reply(route: str, request: Request) -> dict[str, Any]:
        calls.append(route)
        return {"route": route, "user": who(request), "n": next(counter)}

    @app.get("/me")  # nothing declared: credentialed requests bypass the cache
    @cache_response(ttl=60, cache=cache)
    async def me(request: Request) -> dict[str, Any]:
        return reply("/me", request)

    @app.get("/me-varied")
    @cache_response(ttl=60, cache=cache, vary=["authorization", "cookie:session"])
    async def me_varied(request: Request) -> dict[str, Any]:
        return reply("/me-varied", request)

    @app.get("/cart")  # by session cookie only: a bearer token is not declared
    @cache_response(ttl=60, cache=cache, vary=["cookie:session"])
    def cart(request: Request) -> dict[str, Any]:
        return reply("/cart", request)

    @app.get("/catalogue")
    @cache_response(ttl=60, cache=cache, public=True)
    async def catalogue() -> dict[str, Any]:
        calls.append("/catalogue")
        return {"route": "/catalogue", "user": "-", "n": next(counter)}

    @app.get("/login")  # sets a cookie: never stored, whoever asks
    @cache_response(ttl=60, cache=cache, public=True)
    async def login(request: Request, response: Response) -> dict[str, Any]:
        body = reply("/login", request)
        response.set_cookie("session", f"sid-{body['n']}")
        return body

    @app.get("/private")  # the endpoint says private: never stored
    @cache_response(ttl=60, cache=cache)
    async def private(request: Request, response: Response) -> dict[str, Any]:
        response.headers["Cache-Control"] = "private, max-age=5"
        return reply("/private", request)

    @app.get("/custom")  # a key function takes responsibility for what it keys by
    @cache_response(ttl=60, cache=cache, key=who)
    async def custom(request: Request) -> dict[str, Any]:
        return reply("/custom", request)

    return app, calls


def expected(route: str, headers: dict[str, str]) -> tuple[object, str, str | None]:
    """(model key or None: bypass, Cache-Control, Vary) for a request of ``route``."""
    auth = headers.get("Authorization")
    cookie = headers.get("Cookie", "").strip()
    session = next((part.split("=", 1)[1] for part in cookie.split("; ")
                    if part.startswith("session=")), None)
    if route == "/me":
        return (None if auth or cookie else ("/me",)), PRIVATE, ALL
    if route == "/me-varied":
        return ("/me-varied", auth, session), PRIVATE, ALL
    if route == "/cart":
        return (None if auth else ("/cart", session)), PRIVATE, ALL
    if route == "/catalogue":
        return ("/catalogue",), PUBLIC, None
    if route == "/login":
        return None, PRIVATE, None
    if route == "/private":
        return None, "private, max-age=5", ALL
    return ("/custom", auth.removeprefix("Bearer ") if auth else session or "anonymous"), \
        PRIVATE, ALL


Get = Callable[..., Awaitable[httpx.Response]]


def cookieless(app: FastAPI) -> Get:
    """``await get(path, headers={...})`` straight through the ASGI transport: no client cookie
    jar, so a Set-Cookie never leaks into the next simulated user's request."""
    transport = httpx.ASGITransport(app=app)

    async def get(path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        request = httpx.Request("GET", f"http://test{path}", headers=headers or {})
        response = await transport.handle_async_request(request)
        await response.aread()
        return response

    return get


def serve(cache: AsyncCacheService, body: Callable[[Get, list[str]], Awaitable[None]]) -> None:
    app, calls = users_app(cache)

    async def main() -> None:
        try:
            await body(cookieless(app), calls)
        finally:
            await cache.clear_all()
            await cache.aclose()

    asyncio.run(main())


def _check(route: str, user: str, reply: httpx.Response, stored: dict[object, int]) -> None:
    """One reply against the model: the right user's body, and what it says about caching."""
    headers = USERS[user]
    key, cache_control, vary = expected(route, headers)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["route"] == route
    if route != "/catalogue":
        assert data["user"] == who_of(headers), (route, user, data)
    if key is None:
        assert reply.headers["x-cache"] == "BYPASS", (route, user)
    elif key in stored:
        assert reply.headers["x-cache"] == "HIT", (route, user)
        assert data["n"] == stored[key]  # the very response stored for this key
    else:
        assert reply.headers["x-cache"] == "MISS", (route, user)
        stored[key] = data["n"]
    assert reply.headers["cache-control"] == cache_control, (route, user)
    assert reply.headers.get("vary") == vary, (route, user)
    assert ("set-cookie" in reply.headers) == (route == "/login")


def who_of(headers: dict[str, str]) -> str:
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ")
    for part in headers.get("Cookie", "").split("; "):
        if part.startswith("session="):
            return part.split("=", 1)[1]
    return "anonymous"


REQUESTS = st.lists(st.tuples(st.sampled_from(ROUTES), st.sampled_from(sorted(USERS))),
                    min_size=1, max_size=40)


@pytest.mark.parametrize("up", [True, False], ids=["redis-up", "redis-down"])
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=REQUESTS)
def test_no_user_ever_gets_another_users_response(
        redis_server: RedisServer, up: bool, requests: list[tuple[str, str]]) -> None:
    cache = AsyncCacheService(unique("users"), url=redis_server.url if up else refused_url(),
                              connect_timeout=0.1, socket_timeout=0.25)

    async def body(get: Get, calls: list[str]) -> None:
        stored: dict[object, int] = {}
        for route, user in requests:
            _check(route, user, await get(route, headers=USERS[user]), stored)
        # concurrently too: single-flight never shares a load across keys or a bypass
        replies = await asyncio.gather(*(get(route, headers=USERS[user])
                                         for route, user in requests))
        for (route, user), reply in zip(requests, replies, strict=True):
            assert reply.json()["route"] == route
            if route != "/catalogue":
                assert reply.json()["user"] == who_of(USERS[user])
        assert await cache.is_redis_available() is up

    serve(cache, body)


@pytest.mark.parametrize("up", [True, False], ids=["redis-up", "redis-down"])
def test_the_issue_scenario(redis_server: RedisServer, up: bool) -> None:
    """Alice's /me then Bob's (other token) and Carol's (cookie): each gets their own, and
    anonymous responses are still cached."""
    cache = AsyncCacheService(unique("users"), url=redis_server.url if up else refused_url(),
                              connect_timeout=0.1, socket_timeout=0.25)

    async def body(get: Get, calls: list[str]) -> None:
        for route in ("/me", "/me-varied"):
            for user in ("alice", "bob", "carol", "alice", "bob", "carol"):
                reply = await get(route, headers=USERS[user])
                assert reply.json()["user"] == who_of(USERS[user])
        assert calls.count("/me") == 6  # credentialed: never served from the cache
        assert calls.count("/me-varied") == 3  # declared: one entry per user
        first = await get("/me")
        second = await get("/me")
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        assert second.json() == first.json()

    serve(cache, body)


def test_credentials_are_hashed_into_keys_never_stored_in_clear(
        redis_server: RedisServer) -> None:
    cache = AsyncCacheService(unique("users"), url=redis_server.url)

    async def body(get: Get, calls: list[str]) -> None:
        for user in ("alice", "carol", "dave"):
            await get("/me-varied", headers=USERS[user])
        with redis_server.client() as raw:
            keys = [k.decode(errors="replace") for k in raw.scan_iter(f"*{cache.prefix}*")]
        assert len([k for k in keys if "me_varied" in k]) >= 3
        for secret in ("alice-token", "carol-sid", "dave-sid"):
            assert not any(secret in k for k in keys)

    serve(cache, body)


def test_cookie_setting_loads_are_never_shared_even_by_concurrent_waiters(
        redis_server: RedisServer) -> None:
    """Concurrent anonymous /login requests (one key, public): each runs the endpoint and gets
    its own cookie; a conditional request keeps its Set-Cookie on the 304."""
    cache = AsyncCacheService(unique("users"), url=redis_server.url)

    async def body(get: Get, calls: list[str]) -> None:
        replies = await asyncio.gather(*(get("/login") for _ in range(20)))
        cookies = [r.headers["set-cookie"] for r in replies]
        assert len(set(cookies)) == 20
        for reply in replies:
            assert f"sid-{reply.json()['n']}" in reply.headers["set-cookie"]
            assert reply.headers["x-cache"] == "BYPASS"
        assert calls.count("/login") == 20
        etag = replies[0].headers["etag"]
        again = await get("/catalogue")
        not_modified = await get("/catalogue", headers={"If-None-Match":
                                                               again.headers["etag"]})
        assert (not_modified.status_code, not_modified.headers["cache-control"]) == (304, PUBLIC)
        login = await get("/login", headers={"If-None-Match": "*"})
        assert login.status_code == 304
        assert "set-cookie" in login.headers
        assert etag

    serve(cache, body)


@pytest.mark.parametrize(("options", "needle"), [
    ({"vary": "authorization"}, "as a list"),
    ({"vary": ["bad header"]}, "vary= takes"),
    ({"vary": ["cookie:"]}, "vary= takes"),
    ({"vary": ["accept:json"]}, "vary= takes"),
    ({"vary": [None]}, "vary= takes"),
    ({"vary": ["authorization"], "public": True}, "cannot vary by credentials"),
    ({"vary": ["cookie:session"], "public": True}, "cannot vary by credentials"),
    ({"max_age": -1}, "max_age"),
    ({"max_age": float("nan")}, "max_age"),
])
def test_bad_route_options_are_refused(options: dict[str, Any], needle: str) -> None:
    cache = AsyncCacheService(unique("users"), url="memory://")
    with pytest.raises(ConfigurationError, match=needle):
        cache_response(cache=cache, **options)


def test_public_route_headers_and_max_age(redis_server: RedisServer) -> None:
    cache = AsyncCacheService(unique("users"), url=redis_server.url)
    app = FastAPI()

    @app.get("/a")
    @cache_response(ttl=30, cache=cache, public=True, max_age=0, vary=["accept-language"])
    async def a(request: Request) -> dict[str, str]:
        return {"lang": request.headers.get("accept-language", "")}

    async def main() -> None:
        get = cookieless(app)
        try:
            en = await get("/a", headers={"Accept-Language": "en", **USERS["alice"]})
            fr = await get("/a", headers={"Accept-Language": "fr"})
            hit = await get("/a", headers={"Accept-Language": "en", **USERS["carol"]})
            assert (en.json(), fr.json(), hit.json()) == ({"lang": "en"}, {"lang": "fr"},
                                                          {"lang": "en"})
            assert [r.headers["x-cache"] for r in (en, fr, hit)] == ["MISS", "MISS", "HIT"]
            assert hit.headers["cache-control"] == "public, max-age=0"
            assert hit.headers["vary"] == "Accept-Language"
        finally:
            await cache.clear_all()
            await cache.aclose()

    asyncio.run(main())
