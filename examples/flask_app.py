"""A Flask app on Flask-Caching with the cache_service backend.

``CACHE_URL=redis://127.0.0.1:6379/0 flask --app examples/flask_app.py run``
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from flask import Flask
from flask_caching import Cache


def create_app(url: str | None = None) -> tuple[Flask, Cache]:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("FLASK_SECRET_KEY", "example-only-secret-key-change-me"),
        CACHE_TYPE="cache_service.integrations.flask.make_cache",
        CACHE_REDIS_URL=url or os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/0"),
        CACHE_KEY_PREFIX="flask-example:",
        CACHE_DEFAULT_TIMEOUT=300,
    )
    cache = Cache(app)
    renders = itertools.count(1)
    calls = itertools.count(1)

    @app.route("/")
    @cache.cached(timeout=60)
    def index() -> str:
        return f"home #{next(renders)} rendered at {time.time():.3f}"

    @cache.memoize(timeout=60)
    def slow_square(n: int) -> dict[str, Any]:
        return {"n": n, "square": n * n, "computed": next(calls)}

    @app.route("/square/<int:n>")
    def square(n: int) -> dict[str, Any]:
        return slow_square(n)

    @app.route("/square/<int:n>/forget", methods=["POST"])
    def forget(n: int) -> str:
        cache.delete_memoized(slow_square, n)
        return "ok"

    return app, cache


if os.environ.get("CACHE_URL"):
    app, cache = create_app()
