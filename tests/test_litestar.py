"""Litestar's Store protocol on AsyncCacheService, and a real Litestar app's response cache, rate
limiting and server-side sessions through a Redis outage (refused, then back)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import pytest

pytest.importorskip("litestar")

from litestar import Litestar, Request, get, post
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.base import NamespacedStore
from litestar.stores.registry import StoreRegistry
from litestar.testing import AsyncTestClient, TestClient

from cache_service import AsyncCacheService, ConfigurationError
from cache_service.integrations.litestar import CacheServiceStore

from .helpers import unique
from .servers import RedisServer

T = TypeVar("T")
FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.2}


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(main())


async def recovered(store: CacheServiceStore) -> None:
    for _ in range(200):
        if await store.service.is_redis_available():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("Redis did not come back")


@pytest.fixture(params=["redis", "memory"])
def url(request: pytest.FixtureRequest, redis_server: RedisServer) -> str:
    return redis_server.url if request.param == "redis" else "memory://"


# -- the protocol -------------------------------------------------------------------------------
def test_store_protocol(url: str) -> None:
    async def main() -> None:
        store = CacheServiceStore.with_url(url, prefix=unique(), **FAST)
        assert isinstance(store, NamespacedStore)
        assert await store.get("k") is None
        assert not await store.exists("k")
        assert await store.expires_in("k") is None
        await store.set("k", b"\x00\xffbytes")
        await store.set("text", "naïve")
        assert await store.get("k") == b"\x00\xffbytes"
        assert await store.get("text") == "naïve".encode()
        assert await store.exists("k")
        assert await store.expires_in("k") is None  # set with no expiry
        await store.set("t", b"v", expires_in=10)
        assert await store.expires_in("t") == 10
        await store.set("td", b"v", expires_in=timedelta(minutes=2))
        assert await store.expires_in("td") == 120
        assert await store.get("t", renew_for=timedelta(seconds=100)) == b"v"
        assert await store.expires_in("t") == 100
        assert await store.get("k", renew_for=100) == b"\x00\xffbytes"
        assert await store.expires_in("k") is None  # no expiry stays no expiry
        await store.delete("k")
        await store.delete("never-set")
        assert await store.get("k") is None
        await store.service.set(":foreign", {"not": "bytes"})  # not a store's value: a miss
        assert await store.get("foreign") is None
        await store.service.set(":foreign", "text beyond Latin-1: \u20ac")
        assert await store.get("foreign") is None
        every_byte = bytes(range(256)) * 4
        await store.set("binary", every_byte)
        assert await store.get("binary") == every_byte
        await store.service.aclose()

    run(main)


def test_namespaces_nest_and_delete_all_covers_children_only(url: str) -> None:
    async def main() -> None:
        root = CacheServiceStore.with_url(url, prefix=unique(), **FAST)
        a = root.with_namespace("a")
        ab = a.with_namespace("b")
        others = [root, root.with_namespace("b"), root.with_namespace("ab")]
        assert (a.namespace, ab.namespace, root.namespace) == ("a", "a/b", None)
        for n, store in enumerate([a, ab, *others]):
            await store.set("k", str(n))
        assert [await s.get("k") for s in (a, ab, *others)] == [b"0", b"1", b"2", b"3", b"4"]
        await a.delete_all()
        assert [await s.get("k") for s in (a, ab, *others)] == [None, None, b"2", b"3", b"4"]
        await root.delete_all()
        assert [await s.get("k") for s in others] == [None, None, None]
        for bad in ("", "x:y", "x/y", "x#", None):
            with pytest.raises(ConfigurationError, match="store namespace"):
                root.with_namespace(bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="AsyncCacheService"):
            CacheServiceStore("redis://x")  # type: ignore[arg-type]
        await root.service.aclose()

    run(main)


def test_long_keys_and_odd_keys_and_oversized_values() -> None:
    async def main() -> None:
        store = CacheServiceStore(AsyncCacheService(unique(), url="memory://",
                                                    max_value_bytes=4096))
        long_key, odd_key = "q=" + "x" * 5000, "bad-\ud800-surrogate"
        await store.set(long_key, b"long")
        await store.set(odd_key, b"odd")
        assert (await store.get(long_key), await store.get(odd_key)) == (b"long", b"odd")
        await store.set("big", b"old")
        await store.set("big", b"x" * 10_000)  # not stored, no error; the old value is gone
        assert await store.get("big") is None

    run(main)


# -- a real app through an outage -----------------------------------------------------------------
def app_on(store: CacheServiceStore) -> tuple[Litestar, Callable[[], int]]:
    """An app with a cached page, a rate-limited route and server-side sessions on ``store``."""
    renders = itertools.count(1)
    rendered = [0]

    @get("/page", cache=60)
    async def page() -> dict[str, int]:
        rendered[0] = next(renders)
        return {"render": rendered[0]}

    @get("/limited", middleware=[RateLimitConfig(rate_limit=("minute", 3)).middleware])
    async def limited() -> str:
        return "ok"

    @post("/login")
    async def login(request: Request[Any, Any, Any]) -> None:
        request.set_session({"user": request.query_params["user"]})

    @get("/me")
    async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return dict(request.session)

    app = Litestar([page, limited, login, me],
                   stores=StoreRegistry(default_factory=store.with_namespace),
                   middleware=[ServerSideSessionConfig().middleware])
    return app, lambda: rendered[0]


Scenario = Callable[[AsyncTestClient[Litestar], Callable[[], int]], Awaitable[None]]


def through_an_outage(fresh_redis_server: RedisServer, up: Scenario, down: Scenario,
                      back: Scenario) -> None:
    """``up`` with Redis up; ``down`` with it killed (connections refused); ``back`` once it
    has restarted with its data and the service has noticed."""

    async def main() -> None:
        store = CacheServiceStore.with_url(fresh_redis_server.url, prefix=unique(), **FAST)
        app, renders = app_on(store)
        async with AsyncTestClient(app=app) as client:
            await up(client, renders)
            fresh_redis_server.kill()
            await down(client, renders)
            fresh_redis_server.restart(keep_data=True)
            await recovered(store)
            await back(client, renders)
        await store.service.aclose()

    run(main)


async def statuses(client: AsyncTestClient[Litestar], n: int) -> list[int]:
    return [(await client.get("/limited")).status_code for _ in range(n)]


def test_response_cache_through_an_outage(fresh_redis_server: RedisServer) -> None:
    async def up(client: AsyncTestClient[Litestar], renders: Callable[[], int]) -> None:
        assert [(await client.get("/page")).json() for _ in range(3)] == [{"render": 1}] * 3
        assert fresh_redis_server.client().keys("*response_cache:GET/page")

    async def down(client: AsyncTestClient[Litestar], renders: Callable[[], int]) -> None:
        # Redis' copy is out of reach: rendered once more, then served from the fallback
        assert [(await client.get("/page")).json() for _ in range(3)] == [{"render": 2}] * 3

    async def back(client: AsyncTestClient[Litestar], renders: Callable[[], int]) -> None:
        # the outage's write was replayed as an invalidation: never the pre-outage copy
        assert [(await client.get("/page")).json() for _ in range(3)] == [{"render": 3}] * 3

    through_an_outage(fresh_redis_server, up, down, back)


def test_rate_limit_through_an_outage(fresh_redis_server: RedisServer) -> None:
    async def up(client: AsyncTestClient[Litestar], renders: Callable[[], int]) -> None:
        assert await statuses(client, 4) == [200, 200, 200, 429]

    async def down(client: AsyncTestClient[Litestar], renders: Callable[[], int]) -> None:
        # still limited, on the fallback's count (a new window: Redis' count is out of reach)
        assert await statuses(client, 5) == [200, 200, 200, 429, 429]

    async def back(client: AsyncTestClient[Litestar], renders: Callable[[], int]) -> None:
        assert await statuses(client, 4) == [200, 200, 200, 429]
        assert await statuses(client, 2) == [429, 429]

    through_an_outage(fresh_redis_server, up, down, back)


def test_sessions_through_an_outage(fresh_redis_server: RedisServer) -> None:
    async def up(client: AsyncTestClient[Litestar], renders: Callable[[], int]) -> None:
        assert (await client.post("/login?user=ann")).status_code == 201
        assert (await client.get("/me")).json() == {"user": "ann"}

    async def down(client: AsyncTestClient[Litestar], renders: Callable[[], int]) -> None:
        assert (await client.get("/me")).json() == {}  # Redis holds it: out of reach, no error
        assert (await client.post("/login?user=bob")).status_code == 201
        assert (await client.get("/me")).json() == {"user": "bob"}

    async def back(client: AsyncTestClient[Litestar], renders: Callable[[], int]) -> None:
        # the session written during the outage was replayed as an invalidation: neither
        # the fallback's copy nor the stale pre-outage one is served
        assert (await client.get("/me")).json() == {}
        assert (await client.post("/login?user=cy")).status_code == 201
        assert (await client.get("/me")).json() == {"user": "cy"}

    through_an_outage(fresh_redis_server, up, down, back)


def test_sync_test_client_and_stores_registered_by_name(redis_server: RedisServer) -> None:
    """Under Litestar's TestClient (the app on a portal thread's loop), with stores registered
    by name (each is then a lifespan manager; the one owning the service closes it)."""
    root = CacheServiceStore.with_url(redis_server.url, prefix=unique(), **FAST)
    renders = itertools.count(1)

    @get("/page", cache=60)
    async def page() -> dict[str, int]:
        return {"render": next(renders)}

    app = Litestar([page], stores={"response_cache": root.with_namespace("pages"),
                                   "root": root})
    for _ in range(2):  # a second lifespan reopens what the first one closed
        with TestClient(app=app) as client:
            assert client.get("/page").json() == {"render": 1}
    assert redis_server.client().exists(root.service.full_key("pages:GET/page"))
