"""A Hypothesis stateful model of the cache against a dict, on memory:// and on a real Redis.

Every method of the API is a rule; the model is ``{key: (value, tags)}`` (TTLs are long
enough never to expire during a run, so the model needs no clock). After each step every
key of the model is compared with ``get``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cache_service import CacheService, NotAnIntegerError

from .helpers import unique
from .servers import RedisServer

KEYS = st.sampled_from(["a", "b", "c", "d", "{x}e", "f:1"])
TAGS = st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=2, unique=True)
VALUES = (st.integers(-50, 50) | st.none() | st.booleans() | st.text(max_size=4)
          | st.lists(st.integers(0, 9), max_size=3) | st.tuples(st.integers(0, 9))
          | st.floats(allow_nan=False, width=16))
TTL = 600


class CacheModel(RuleBasedStateMachine):
    """The service must behave like ``model`` (a dict of key -> (value, tags))."""

    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.cache = CacheService(unique("model"), url=self.url, default_ttl=TTL)
        self.model: dict[str, tuple[Any, frozenset[str]]] = {}
        # invalidated by tag but maybe still stored (until read or expired): ``delete`` may
        # count them, since it counts what it physically removed
        self.dead: set[str] = set()

    def teardown(self) -> None:
        self.cache.clear_all()

    def _is_counter(self, key: str) -> bool:
        found = self.model.get(key)
        return found is None or (type(found[0]) is int and not found[1])

    @rule(key=KEYS, value=VALUES, tags=TAGS)
    def set(self, key: str, value: Any, tags: list[str]) -> None:
        self.cache.set(key, value, tags=tags)
        self.model[key] = (value, frozenset(tags))
        self.dead.discard(key)

    @rule(mapping=st.dictionaries(KEYS, VALUES, max_size=4), tags=TAGS)
    def set_many(self, mapping: dict[str, Any], tags: list[str]) -> None:
        self.cache.set_many(mapping, tags=tags)
        for key, value in mapping.items():
            self.model[key] = (value, frozenset(tags))
            self.dead.discard(key)

    @rule(key=KEYS, value=VALUES, tags=TAGS)
    def add(self, key: str, value: Any, tags: list[str]) -> None:
        assert self.cache.add(key, value, tags=tags) is (key not in self.model)
        if key not in self.model:
            self.model[key] = (value, frozenset(tags))
            self.dead.discard(key)

    @rule(key=KEYS, delta=st.integers(-5, 5), down=st.booleans())
    def incr(self, key: str, delta: int, down: bool) -> None:
        call = self.cache.decr if down else self.cache.incr
        if not self._is_counter(key):
            with pytest.raises(NotAnIntegerError):
                call(key, delta)
            return
        expected = (self.model[key][0] if key in self.model else 0) + (-delta if down else delta)
        assert call(key, delta) == expected
        self.model[key] = (expected, frozenset())
        self.dead.discard(key)

    @rule(keys=st.lists(KEYS, max_size=5))
    def delete(self, keys: list[str]) -> None:
        live = len(set(keys) & set(self.model))
        assert live <= self.cache.delete(*keys) <= live + len(set(keys) & self.dead)
        for key in keys:
            self.model.pop(key, None)
            self.dead.discard(key)

    @rule(tags=TAGS)
    def invalidate_tags(self, tags: list[str]) -> None:
        self.cache.invalidate_tags(*tags)
        for key in [k for k, (_, t) in self.model.items() if t & set(tags)]:
            del self.model[key]
            self.dead.add(key)

    @precondition(lambda self: len(self.model) > 3)
    @rule()
    def clear_all(self) -> None:
        self.cache.clear_all()
        self.model.clear()
        self.dead.clear()

    @rule(key=KEYS)
    def touch(self, key: str) -> None:
        assert self.cache.touch(key, TTL) is (key in self.model)

    @rule(key=KEYS)
    def ttl_and_exists(self, key: str) -> None:
        left = self.cache.ttl(key)
        assert (left is not None) is (key in self.model)
        assert left is None or 0 < left <= TTL
        assert self.cache.exists(key) is (key in self.model)

    @rule(keys=st.lists(KEYS, max_size=6))
    def get_many(self, keys: list[str]) -> None:
        expected = {k: self.model[k][0] for k in keys if k in self.model}
        assert self.cache.get_many(keys) == expected

    @invariant()
    def every_key_reads_as_modelled(self) -> None:
        for key in ("a", "b", "c", "d", "{x}e", "f:1"):
            expected = self.model[key][0] if key in self.model else "MISS"
            got = self.cache.get(key, default="MISS")
            assert got == expected, (key, got, expected)
            assert type(got) is type(expected), (key, got, expected)


def _run(url: str, examples: int) -> None:
    machine = type("Model", (CacheModel,), {"url": url})
    machine.TestCase.settings = settings(
        max_examples=examples, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow])
    machine.TestCase().runTest()


def test_model_on_memory() -> None:
    _run("memory://stateful-model", 200)


def test_model_on_redis(redis_server: RedisServer) -> None:
    _run(redis_server.url, 100)
