"""An ASGI app that exposes the cache's figures at ``/metrics`` for Prometheus.

Run: ``REDIS_URL=redis://localhost:6379/0 uvicorn examples.metrics_app:app`` (needs
``cache_service[fastapi,prometheus]`` and uvicorn). ``GET /items/{id}`` loads through the
cache, ``DELETE /items/{id}`` invalidates; Prometheus (or ``cache-service stats --watch
--metrics-url http://localhost:8000/metrics``) scrapes ``/metrics``. A scrape reads counters
only: it answers at once during a Redis outage, and shows it.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cache_service.aio import AsyncCacheService
from cache_service.integrations import prometheus

cache = AsyncCacheService("shop", url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
                          breaker_min_backoff=0.1, breaker_max_backoff=0.4)
prometheus.register()  # into prometheus_client's global registry
app = FastAPI()


@app.get("/metrics")
def metrics() -> Response:
    """The Prometheus text format (or mount ``prometheus_client.make_asgi_app()``)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def load_item(item_id: int) -> dict[str, Any]:
    """Stands in for a database query."""
    return {"id": item_id, "name": f"item {item_id}"}


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> dict[str, Any]:
    """The item, through the cache."""
    return await cache.get_or_set(f"item:{item_id}", lambda: load_item(item_id), ttl=300)  # type: ignore[no-any-return]


@app.delete("/items/{item_id}")
async def delete_item(item_id: int) -> dict[str, int]:
    """Invalidate the cached item."""
    return {"deleted": await cache.delete(f"item:{item_id}")}
