"""Where the contract suite runs: one builder per backend kind.

``test_contract.py`` is parametrized over ``BACKENDS``. A builder gets the pytest request and
returns ``(url, wrap)``: the URL services use, and a function that turns a CacheService-like
constructor into what the tests call (the async kind wraps AsyncCacheService so the same
blocking-style tests drive it). Add a kind by adding a builder here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cache_service import CacheService

Builder = Callable[[pytest.FixtureRequest], tuple[str, Callable[..., Any]]]


def _memory(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    return f"memory://{uuid.uuid4().hex}", CacheService


def _redis(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any]]:
    return request.getfixturevalue("redis_server").url, CacheService


BACKENDS: dict[str, Builder] = {
    "memory": _memory,
    "redis": _redis,
}

# Which kinds have Redis behind them (is_redis_available() should be True there).
REDIS_BACKED = {"redis"}
