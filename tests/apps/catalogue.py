"""A catalogue API as apps deploy it: several uvicorn workers, rows in a shared SQLite file.

``GET /items/{id}`` loads through the cache; ``PUT /items/{id}`` bumps the row's version in
the database, then deletes the cached copy. ``CATALOGUE_DB`` names the database file and
``REDIS_URL`` the cache (both set by the test).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from fastapi import FastAPI

from cache_service.aio import AsyncCacheService

DB = os.environ["CATALOGUE_DB"]
cache = AsyncCacheService("catalogue", url=os.environ["REDIS_URL"], socket_timeout=0.2,
                          connect_timeout=0.2, breaker_min_backoff=0.1, breaker_max_backoff=0.4)
app = FastAPI()


def _row(item_id: int) -> dict[str, Any]:
    with sqlite3.connect(DB, timeout=10) as db:
        version = db.execute("SELECT version FROM items WHERE id = ?", (item_id,)).fetchone()[0]
    return {"id": item_id, "version": version}


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> dict[str, Any]:
    """The row, through the cache."""
    return await cache.get_or_set(f"item:{item_id}", lambda: _row(item_id), ttl=300)  # type: ignore[no-any-return]


@app.put("/items/{item_id}")
async def put_item(item_id: int) -> dict[str, Any]:
    """A new version in the database, then the cached copy invalidated."""
    with sqlite3.connect(DB, timeout=10) as db:
        db.execute("UPDATE items SET version = version + 1 WHERE id = ?", (item_id,))
    row = _row(item_id)
    await cache.delete(f"item:{item_id}")
    return row


@app.get("/stats")
async def stats() -> dict[str, Any]:
    """This worker's cache figures."""
    return {"pid": os.getpid(), **(await cache.stats())}
