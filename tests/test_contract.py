"""One behaviour contract, run over the memory store and over a real Redis."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_service import (
    CacheService,
    ConfigurationError,
    SerializationError,
    ValueTooLargeError,
)

from .backends import BACKENDS, REDIS_BACKED
from .helpers import hammer, unique

Factory = Callable[..., CacheService]


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """Which store the contract runs over (see tests/backends.py)."""
    return str(request.param)


@pytest.fixture
def make(backend: str, request: pytest.FixtureRequest) -> Iterator[Factory]:
    """Build services with unique prefixes on this test's backend."""
    url, construct = BACKENDS[backend](request)
    made: list[CacheService] = []

    def factory(prefix: str | None = None, **kwargs: Any) -> CacheService:
        svc: CacheService = construct(prefix or unique(), url=url, **kwargs)
        made.append(svc)
        return svc

    yield factory
    for svc in made:
        svc.clear_all()
        assert svc.is_redis_available() is (backend in REDIS_BACKED)


@pytest.fixture
def cache(make: Factory) -> CacheService:
    """One service with a unique prefix."""
    return make()


def test_set_get_string_and_dict(cache: CacheService) -> None:
    cache.set("user:123", "John Doe")
    assert cache.get("user:123") == "John Doe"
    user = {"id": 123, "name": "John", "email": "john@example.com"}
    cache.set("user:123", user, ttl=300)
    assert cache.get("user:123") == user


def test_get_default_on_miss(cache: CacheService) -> None:
    assert cache.get("user:999") is None
    assert cache.get("user:999", default={"id": 999}) == {"id": 999}


def test_delete_single_and_many_return_counts(cache: CacheService) -> None:
    for k in ("user:123", "user:456", "user:789"):
        cache.set(k, 1)
    assert cache.delete("user:123") == 1
    assert cache.get("user:123") is None
    assert cache.delete("user:123", "user:456", "user:789") == 2
    assert cache.delete() == 0


def test_invalidate_pattern_is_a_glob_on_own_keys(cache: CacheService) -> None:
    for k in ("user:1", "user:2", "user:10", "product:1", "user"):
        cache.set(k, k)
    assert cache.invalidate_pattern("user:?") == 2
    assert cache.get("user:10") == "user:10"
    assert cache.invalidate_pattern("user:*") == 1
    assert cache.get("product:1") == "product:1"
    assert cache.get("user") == "user"


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("a[bc]d", {"abd", "acd"}),
        ("a[^b]d", {"acd", "a]d", "a*d"}),
        ("a[a-c]d", {"abd", "acd"}),
        ("a\\*d", {"a*d"}),
        ("a?d", {"abd", "acd", "a*d", "a]d"}),
        ("*d", {"abd", "acd", "a*d", "a]d"}),
    ],
)
def test_glob_semantics_match_redis(make: Factory, pattern: str, matches: set[str]) -> None:
    cache = make()
    keys = {"abd", "acd", "a*d", "a]d", "abc"}
    for k in keys:
        cache.set(k, 1)
    assert cache.invalidate_pattern(pattern) == len(matches)
    assert {k for k in keys if cache.get(k) is None} == matches


def test_clear_all_only_clears_own_prefix(make: Factory) -> None:
    a, b = make(unique("a")), make(unique("b"))
    a.set("k", 1)
    b.set("k", 2)
    assert a.clear_all() == 1
    assert a.get("k") is None
    assert b.get("k") == 2


def test_prefixes_never_collide(make: Factory) -> None:
    base = unique("api")
    outer, inner = make(base), make(f"{base}:v2")
    outer.set("v2:x", "outer")
    inner.set("x", "inner")
    assert outer.get("v2:x") == "outer"
    assert inner.get("x") == "inner"
    assert outer.clear_all() == 1
    assert inner.get("x") == "inner"
    assert outer.invalidate_pattern("*") == 0


def test_same_prefix_instances_share_data(make: Factory) -> None:
    prefix = unique()
    make(prefix).set("k", [1, 2])
    assert make(prefix).get("k") == [1, 2]


def test_service_isolation_example(make: Factory) -> None:
    auth, product, order = make(unique("auth")), make(unique("product")), make(unique("order"))
    auth.set("status", "authenticated")
    product.set("status", "in_stock")
    order.set("status", "pending")
    assert (auth.get("status"), product.get("status"), order.get("status")) == (
        "authenticated", "in_stock", "pending")


EXACT_VALUES: list[Any] = [
    "", "héllo ☃", 0, -1, 2**64, -(2**70), 0.0, -0.0, 1.5, float("inf"), True, False, None,
    [], {}, [1, "a", None, [2.5]], {"a": {"b": [1, {"c": None}]}},
    (1, 2), (1, (2, [3])), {1, 2}, frozenset({"x"}), b"\x00\xff", bytearray(b"ab"),
    datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc), datetime(2024, 1, 2, 3, 4),
    date(2024, 2, 29), timedelta(days=1, microseconds=5), uuid.UUID(int=7),
    Decimal("1.10"), Decimal("-0"), {1: "int key", (1, 2): "tuple key"}, {"\x00": "tag-like"},
    [{"k": (1,)}], "x" * 10_000,
]


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            _same(k1, k2) and _same(a[k1], b[k2]) for k1, k2 in zip(a, b, strict=True))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


@pytest.mark.parametrize("value", EXACT_VALUES, ids=lambda v: type(v).__name__)
def test_values_round_trip_with_exact_types(cache: CacheService, value: Any) -> None:
    cache.set("v", value)
    assert _same(cache.get("v"), value)


def test_nan_round_trips(cache: CacheService) -> None:
    cache.set("nan", [float("nan")])
    got = cache.get("nan")
    assert isinstance(got[0], float)
    assert got[0] != got[0]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(max_size=20) | st.datetimes() | st.uuids() | st.decimals(allow_nan=False),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_round_trip_property(cache: CacheService, value: Any) -> None:
    cache.set("prop", value)
    assert _same(cache.get("prop"), value)


def test_no_aliasing_either_way(cache: CacheService) -> None:
    original = {"tags": ["a"], "n": 1}
    cache.set("k", original)
    original["tags"].append("mutated after set")
    first = cache.get("k")
    assert first == {"tags": ["a"], "n": 1}
    first["tags"].append("mutated after get")
    assert cache.get("k") == {"tags": ["a"], "n": 1}


@pytest.mark.parametrize("value", [object(), {1, object()}, {"f": lambda: 1}, type])
def test_unserialisable_raises_before_writing(cache: CacheService, value: Any) -> None:
    cache.set("k", "old")
    with pytest.raises(SerializationError, match="cannot cache") as info:
        cache.set("k", value)
    assert isinstance(info.value, TypeError)
    assert cache.get("k") == "old"


def test_oversized_value_raises_before_writing(make: Factory) -> None:
    cache = make(max_value_bytes=1000)
    cache.set("k", "small")
    with pytest.raises(ValueTooLargeError, match="max_value_bytes=1000"):
        cache.set("k", "x" * 2000)
    assert cache.get("k") == "small"


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), True, "10", [], timedelta(0)])
def test_invalid_ttl_is_refused_with_a_clear_message(cache: CacheService, ttl: Any) -> None:
    with pytest.raises(ConfigurationError, match="positive int or float of seconds"):
        cache.set("k", 1, ttl=ttl)
    assert cache.get("k") is None


def test_ttl_forms_are_accepted(cache: CacheService) -> None:
    cache.set("a", 1, ttl=1)
    cache.set("b", 1, ttl=0.5)
    cache.set("c", 1, ttl=timedelta(minutes=1))
    assert [cache.get(k) for k in "abc"] == [1, 1, 1]


def test_ttl_expires(cache: CacheService) -> None:
    cache.set("short", "x", ttl=0.05)
    cache.set("long", "y", ttl=30)
    time.sleep(0.15)
    assert cache.get("short") is None
    assert cache.get("long") == "y"


@pytest.mark.parametrize("key", ["", 5, None, b"bytes", "x" * 5000])
def test_bad_keys_are_refused(cache: CacheService, key: Any) -> None:
    with pytest.raises(ConfigurationError, match="keys must be"):
        cache.set(key, 1)
    with pytest.raises(ConfigurationError):
        cache.get(key)


def test_falsy_values_are_hits(cache: CacheService) -> None:
    for i, v in enumerate([0, "", [], {}, False, None]):
        cache.set(f"f{i}", v)
        assert _same(cache.get(f"f{i}", default="MISS"), v)


def test_threads_hammer(make: Factory) -> None:
    cache = make()

    def worker(n: int) -> None:
        for i in range(150):
            key = f"k{(n * 7 + i) % 20}"
            cache.set(key, {"n": n, "i": i})
            got = cache.get(key)
            assert got is None or set(got) == {"n", "i"}
            if i % 10 == 0:
                cache.delete(key)
            if i % 50 == 0:
                cache.invalidate_pattern("k1*")

    assert hammer(worker) == []


def test_stats_count_hits_and_misses(cache: CacheService) -> None:
    cache.set("k", 1)
    cache.get("k")
    cache.get("nope")
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["sets"]) == (1, 1, 1)
    assert stats["target"]["breaker_state"] in ("closed", "open")
