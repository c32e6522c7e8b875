"""cachelib's common backend tests against CachelibCache, composed as its TestRedisCache is.

Collected only by ``run_pytest.py`` (the name does not match ``test_*``); the URL and mode
come from ``$PEER_URL`` / ``$PEER_MODE``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import test_redis_cache as peer_redis  # type: ignore[import-not-found]
from clear import ClearTests  # type: ignore[import-not-found]
from common import CommonTests  # type: ignore[import-not-found]
from delete_many_with_prefix import (  # type: ignore[import-not-found]
    DeleteManyWithPrefixTests,
)
from has import HasTests  # type: ignore[import-not-found]
from serializer import SerializerTests  # type: ignore[import-not-found]

from cache_service.integrations.cachelib import CachelibCache
from conftest import key_prefix  # type: ignore[import-not-found]  # noqa: F401 (a fixture)
from tests.peer.skips import CACHELIB

URL, MODE = os.environ["PEER_URL"], os.environ["PEER_MODE"]


@pytest.fixture(autouse=True)
def cache_factory(request: Any, key_prefix: str | None) -> None:  # noqa: F811
    def _factory(self: Any, *args: Any, **kwargs: Any) -> CachelibCache:
        kwargs.setdefault("key_prefix", key_prefix)
        cache = CachelibCache(URL, *args, signing_key="peer-suite-signing-key", **kwargs)
        cache.clear()  # as the Redis tests FLUSHDB before each test
        return cache

    request.cls.cache_factory = _factory


class TestCachelibCache(CommonTests, ClearTests, HasTests, DeleteManyWithPrefixTests,
                        SerializerTests):
    test_callable_key = peer_redis.TestRedisCache.test_callable_key


for _name, _reason in CACHELIB.get(MODE, {}).items():
    setattr(TestCachelibCache, _name,
            pytest.mark.skip(reason=_reason)(getattr(TestCachelibCache, _name)))
