"""A Litestar app whose response cache, rate limiting and server-side sessions live in
cache_service (Redis, and the memory fallback while Redis is down).

Run it (without Redis it serves from memory)::

    pip install "cache_service[litestar]" uvicorn
    CACHE_URL=redis://127.0.0.1:6379/0 uvicorn examples.litestar_app:app

    curl localhost:8000/report                   # rendered once a minute, then cached
    curl localhost:8000/search?q=a               # 5 a minute per client, then 429
    curl -c jar -X POST 'localhost:8000/login?user=ann' && curl -b jar localhost:8000/me

One root store; Litestar asks the registry for "response_cache", "rate_limit" and "sessions",
and each becomes a namespace of it (``delete_all`` on one never touches the others).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.registry import StoreRegistry

from cache_service.integrations.litestar import CacheServiceStore


def create_app(url: str) -> Litestar:
    store = CacheServiceStore.with_url(url, prefix="litestar-example")
    renders = itertools.count(1)

    @get("/report", cache=60)
    async def report() -> dict[str, Any]:
        return {"render": next(renders), "at": round(time.time(), 3)}

    @get("/search", middleware=[RateLimitConfig(rate_limit=("minute", 5)).middleware])
    async def search(request: Request[Any, Any, Any]) -> dict[str, str]:
        return {"q": request.query_params.get("q", "")}

    @post("/login")
    async def login(request: Request[Any, Any, Any]) -> dict[str, str]:
        request.set_session({"user": request.query_params.get("user", "guest")})
        return {"ok": "logged in"}

    @get("/me")
    async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return dict(request.session)

    async def close_store() -> None:
        await store.service.aclose()

    return Litestar(
        [report, search, login, me],
        stores=StoreRegistry(default_factory=store.with_namespace),
        middleware=[ServerSideSessionConfig().middleware],
        on_shutdown=[close_store],
    )


if os.environ.get("CACHE_URL"):
    app = create_app(os.environ["CACHE_URL"])
