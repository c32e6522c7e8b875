"""The usage contract's FastAPI example, written with the async service.

Run it (Redis from ``REDIS_URL``, else localhost:6379; without Redis it serves from memory)::

    pip install "cache_service[fastapi]" uvicorn
    uvicorn examples.fastapi_app:app            # or: python examples/fastapi_app.py

    curl -i localhost:8000/users/1              # X-Cache: MISS, then HIT
    curl -i -X PUT localhost:8000/users/1 -H 'content-type: application/json' -d '{"name": "Ann"}'

Differences from the seed, each on purpose:

- ``await api_cache...`` from ``cache_service.aio``: a blocking client in an ``async def``
  handler would stall the event loop for every request;
- ``get_or_set`` instead of ``if cached: return cached``: a cached falsy value is a hit, and
  concurrent misses of one user query the database once (single-flight);
- ``/users`` shows the route decorator: ETag/304, ``X-Cache``, ``Cache-Control: no-cache``;
  ``HeadMiddleware`` answers HEAD on every GET route (``curl -I localhost:8000/users``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException

from cache_service.aio import AsyncCacheService, api_cache
from cache_service.integrations.fastapi import (
    HeadMiddleware,
    cache_response,
    close_on_shutdown,
    provide,
)

# The dependency routes use; create_app() points it at the app's service.
cache_dependency = provide(api_cache)
CacheDep = Annotated[AsyncCacheService, Depends(cache_dependency)]


class FakeDB:
    """Stands in for the application's database; counts queries so tests can see hits."""

    def __init__(self) -> None:
        self.users: dict[int, dict[str, Any]] = {
            1: {"id": 1, "name": "John", "email": "john@example.com"},
            2: {"id": 2, "name": "Jane", "email": "jane@example.com"},
        }
        self.queries = 0

    async def get_user(self, user_id: int) -> dict[str, Any] | None:
        self.queries += 1
        await asyncio.sleep(0.01)  # a round trip to the database
        user = self.users.get(user_id)
        return dict(user) if user is not None else None

    async def list_users(self) -> list[dict[str, Any]]:
        self.queries += 1
        await asyncio.sleep(0.01)
        return [dict(u) for u in self.users.values()]

    async def update_user(self, user_id: int, data: dict[str, Any]) -> dict[str, Any]:
        self.queries += 1
        if user_id not in self.users:
            raise HTTPException(status_code=404, detail="user not found")
        self.users[user_id].update(data)
        return dict(self.users[user_id])


def create_app(cache: AsyncCacheService = api_cache, db: FakeDB | None = None) -> FastAPI:
    """The app; tests pass their own cache (a test Redis) and database."""
    database = db if db is not None else FakeDB()
    router = APIRouter()

    @router.get("/users/{user_id}")
    async def get_user(user_id: int, cache: CacheDep) -> dict[str, Any]:
        user = await cache.get_or_set(f"user:{user_id}", lambda: database.get_user(user_id),
                                      ttl=300)
        if user is None:
            raise HTTPException(status_code=404, detail="user not found")
        return dict(user)

    @router.get("/users")
    @cache_response(ttl=60, cache=cache)
    async def list_users() -> list[dict[str, Any]]:
        return await database.list_users()

    @router.put("/users/{user_id}")
    async def update_user(user_id: int, data: dict[str, Any], cache: CacheDep) -> dict[str, Any]:
        updated = await database.update_user(user_id, data)
        await cache.delete(f"user:{user_id}")
        await list_users.invalidate()  # type: ignore[attr-defined]
        return updated

    app = FastAPI(title="cache_service FastAPI example", lifespan=close_on_shutdown(cache))
    app.include_router(router)
    app.add_middleware(HeadMiddleware)  # HEAD on the GET routes: headers only, same cache entry
    app.dependency_overrides[cache_dependency] = lambda: cache
    app.state.db = database
    app.state.cache = cache
    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
