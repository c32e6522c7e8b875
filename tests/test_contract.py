"""One behaviour contract, run over the memory store, real Redis deployments (standalone,
cluster, Sentinel, TLS) and the host-shared fallback store of an unreachable Redis."""

from __future__ import annotations

import math
import threading
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
    NotAnIntegerError,
    PickleCodec,
    SerializationError,
    ValueTooLargeError,
)

from .backends import BACKENDS, HOST_FALLBACK, REDIS_BACKED
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
        if backend in HOST_FALLBACK:  # served by the host-shared store, not a per-process one
            target = svc.stats()["target"]
            assert (target["fallback"], target["breaker_state"]) == ("host", "open"), target


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


def test_no_aliasing_for_lists_nested_values_and_batches(cache: CacheService) -> None:
    def fresh() -> dict[str, Any]:
        return {"l": [1, [2]], "d": {"a": {"b": [3]}}, "k": {1: ["int key"]}}

    given = fresh()
    for key, value in given.items():
        cache.set(key, value)
    batch = fresh()
    cache.set_many({f"m{key}": value for key, value in batch.items()})
    added = fresh()
    for key, value in added.items():
        assert cache.add(f"a{key}", value) is True
    for values in (given, batch, added):
        values["l"][1].append("after set")
        values["d"]["a"]["b"].append("after set")
        values["k"][1].append("after set")
    for key in fresh():
        for stored in (key, f"m{key}", f"a{key}"):
            got = cache.get(stored)
            assert got == fresh()[key]
            (got[1] if key == "l" else got["a"]["b"] if key == "d" else got[1]).append("after")
            assert cache.get(stored) == fresh()[key]
            assert cache.get_many([stored]) == {stored: fresh()[key]}


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


# -- the rest of the API (issue 9): batches, add, counters, TTLs, tags ---------------------


def test_get_many_returns_the_hits_only(cache: CacheService) -> None:
    cache.set("a", 1)
    cache.set("b", {"x": (1, 2)})
    cache.set("c", None)
    assert cache.get_many(["a", "b", "c", "missing", "a"]) == {
        "a": 1, "b": {"x": (1, 2)}, "c": None}
    assert cache.get_many([]) == {}
    assert cache.get_many(iter(["a"])) == {"a": 1}
    assert cache.stats()["hits"] == 4


def test_get_many_over_many_slots_and_values(cache: CacheService) -> None:
    values = {f"k{i}": EXACT_VALUES[i % len(EXACT_VALUES)] for i in range(300)}
    for k, v in values.items():
        cache.set(k, v)
    got = cache.get_many([*values, "nope"])
    assert set(got) == set(values)
    assert all(_same(got[k], v) for k, v in values.items())


@pytest.mark.parametrize("keys", ["abc", b"abc", 5, None, ["ok", 5], ["ok", ""]])
def test_get_many_refuses_bad_keys(cache: CacheService, keys: Any) -> None:
    with pytest.raises(ConfigurationError):
        cache.get_many(keys)


def test_get_many_takes_every_key_get_takes(cache: CacheService) -> None:
    """NUL, non-ASCII and long keys (together longer than one key may be), repeated keys."""
    keys = ["a\x00b", "\x00", "caf\u00e9", "\U0001f600", "x" * 4096, "y" * 4096, "plain"]
    for i, key in enumerate(keys):
        cache.set(key, i)
    assert cache.get_many([*keys, "plain", "x" * 4096, "absent"]) == {
        key: i for i, key in enumerate(keys)}
    assert cache.get_many(["plain", "a", "a\x00"]) == {"plain": 6}
    hits, misses = cache.stats()["hits"], cache.stats()["misses"]
    assert cache.get_many(["plain", "\x00", "plain"]) == {"plain": 6, "\x00": 1}
    assert cache.get_many(["a", "plain", "a"]) == {"plain": 6}
    assert (cache.stats()["hits"] - hits, cache.stats()["misses"] - misses) == (3, 1)  # once each
    for bad in (["plain", "x" * 4097], ["plain", "\ud800"], ["x" * 4096, "y" * 4096, "\udfff"]):
        with pytest.raises(ConfigurationError):
            cache.get_many(bad)


def test_batches_are_bounded(cache: CacheService) -> None:
    with pytest.raises(ConfigurationError, match="at most 10000 keys"):
        cache.get_many([f"k{i}" for i in range(10_001)])
    with pytest.raises(ConfigurationError, match="at most 10000 keys"):
        cache.set_many({f"k{i}": i for i in range(10_001)})


def test_set_many_stores_everything_with_the_ttl(cache: CacheService) -> None:
    mapping = {f"k{i}": {"i": i, "t": (i,)} for i in range(250)}
    cache.set_many(mapping, ttl=30)
    assert cache.get_many(mapping) == mapping
    left = cache.ttl("k7")
    assert left is not None
    assert 25 < left <= 30
    cache.set_many({}, ttl=5)
    cache.set_many({"short": 1}, ttl=0.05)
    time.sleep(0.15)
    assert cache.get("short") is None
    assert cache.get("k1") == {"i": 1, "t": (1,)}


@pytest.mark.parametrize("bad", [object(), {1, object()}])
def test_set_many_writes_nothing_if_one_value_is_bad(cache: CacheService, bad: Any) -> None:
    cache.set("k0", "old")
    with pytest.raises(SerializationError):
        cache.set_many({"k0": "new", "k1": 1, "k2": bad, "k3": 3})
    assert cache.get_many(["k0", "k1", "k2", "k3"]) == {"k0": "old"}


@pytest.mark.parametrize("mapping", [[("a", 1)], "ab", None, 5])
def test_set_many_refuses_non_mappings(cache: CacheService, mapping: Any) -> None:
    with pytest.raises(ConfigurationError, match="mapping"):
        cache.set_many(mapping)


def test_set_many_refuses_bad_keys_and_ttls_before_writing(cache: CacheService) -> None:
    with pytest.raises(ConfigurationError):
        cache.set_many({"a": 1, "": 2})
    with pytest.raises(ConfigurationError):
        cache.set_many({"a": 1}, ttl=0)
    assert cache.get("a") is None


def test_add_stores_only_if_absent(cache: CacheService) -> None:
    assert cache.add("k", "first") is True
    assert cache.add("k", "second") is False
    assert cache.get("k") == "first"
    cache.delete("k")
    assert cache.add("k", [1], ttl=0.05) is True
    time.sleep(0.15)
    assert cache.add("k", "after expiry") is True
    assert cache.get("k") == "after expiry"
    with pytest.raises(SerializationError):
        cache.add("other", object())
    assert cache.exists("other") is False


def test_add_is_atomic_across_threads(cache: CacheService) -> None:
    wins: list[int] = []

    def worker(n: int) -> None:
        if cache.add("once", n):
            wins.append(n)

    assert hammer(worker) == []
    assert len(wins) == 1
    assert cache.get("once") == wins[0]


def test_incr_and_decr(cache: CacheService) -> None:
    assert cache.incr("n") == 1
    assert cache.incr("n", 10) == 11
    assert cache.decr("n") == 10
    assert cache.decr("n", 15) == -5
    assert cache.incr("n", 0) == -5
    assert cache.get("n") == -5
    assert type(cache.get("n")) is int
    assert cache.decr("fresh", 3) == -3
    cache.set("set-int", 41)
    assert cache.incr("set-int") == 42


def test_incr_gives_a_new_key_the_ttl_and_keeps_an_existing_one(cache: CacheService) -> None:
    cache.incr("a", ttl=30)
    left = cache.ttl("a")
    assert left is not None
    assert 25 < left <= 30
    cache.set("b", 5, ttl=60)
    cache.incr("b", ttl=5)  # an existing TTL is kept
    left = cache.ttl("b")
    assert left is not None
    assert left > 50
    cache.incr("c", ttl=0.05)
    time.sleep(0.15)
    assert cache.get("c") is None
    assert cache.incr("c") == 1


@pytest.mark.parametrize("value", ["12", 1.5, True, None, [1], {"n": 1}, 2**60])
def test_incr_refuses_non_int_values_and_leaves_them(cache: CacheService, value: Any) -> None:
    cache.set("k", value)
    error = ValueTooLargeError if type(value) is int else NotAnIntegerError
    with pytest.raises(error) as info:
        cache.incr("k")
    assert isinstance(info.value, TypeError if error is NotAnIntegerError else ValueError)
    assert _same(cache.get("k"), value)


@pytest.mark.parametrize("delta", [1.0, "1", True, None, 2**53])
def test_incr_refuses_bad_deltas(cache: CacheService, delta: Any) -> None:
    with pytest.raises(ConfigurationError, match="delta"):
        cache.incr("k", delta)
    with pytest.raises(ConfigurationError, match="delta"):
        cache.decr("k", delta)
    assert cache.exists("k") is False


def test_incr_stays_exact_up_to_its_bound(cache: CacheService) -> None:
    top = 2**53 - 1
    assert cache.incr("big", top - 1) == top - 1
    assert cache.incr("big") == top
    with pytest.raises(ValueTooLargeError):
        cache.incr("big")
    assert cache.get("big") == top


def test_incr_is_atomic_across_threads(cache: CacheService) -> None:
    def worker(n: int) -> None:
        for _ in range(100):
            cache.incr("hits")

    assert hammer(worker, threads=4) == []
    assert cache.get("hits") == 400


def test_touch_ttl_and_exists(cache: CacheService) -> None:
    assert cache.ttl("k") is None
    assert cache.exists("k") is False
    assert cache.touch("k", 10) is False
    cache.set("k", 0, ttl=5)
    assert cache.exists("k") is True  # a falsy value is there
    left = cache.ttl("k")
    assert left is not None
    assert 4 < left <= 5
    assert cache.touch("k", 100) is True
    left = cache.ttl("k")
    assert left is not None
    assert 95 < left <= 100
    assert cache.touch("k") is True  # the default TTL
    left = cache.ttl("k")
    assert left is not None
    assert 290 < left <= 300
    assert cache.touch("k", 0.05) is True
    time.sleep(0.15)
    assert (cache.exists("k"), cache.ttl("k"), cache.touch("k")) == (False, None, False)
    with pytest.raises(ConfigurationError):
        cache.touch("k", 0)


def test_tags_invalidate_every_value_written_with_them(cache: CacheService) -> None:
    cache.set("u42:profile", {"n": 1}, tags=["user:42"])
    cache.set("u42:prefs", [1], tags=("user:42", "prefs"))
    cache.set("u7:prefs", [7], tags=["user:7", "prefs"])
    cache.set("plain", "untagged")
    cache.set_many({"m1": 1, "m2": 2}, tags=["user:42"])
    assert cache.add("added", True, tags=["user:42"]) is True
    assert cache.get_many(["u42:profile", "u42:prefs", "m1"]) == {
        "u42:profile": {"n": 1}, "u42:prefs": [1], "m1": 1}
    cache.invalidate_tags("user:42")
    for k in ("u42:profile", "u42:prefs", "m1", "m2", "added"):
        assert cache.get(k) is None
        assert cache.exists(k) is False
        assert cache.ttl(k) is None
    assert cache.get_many(["u42:profile", "m1", "u7:prefs", "plain"]) == {
        "u7:prefs": [7], "plain": "untagged"}
    cache.invalidate_tags("prefs", "nothing-has-this")
    assert cache.get("u7:prefs") is None
    cache.set("u42:profile", "rewritten", tags=["user:42"])  # a new write is live again
    assert cache.get("u42:profile") == "rewritten"
    assert cache.add("added", "again") is True  # a dead value counts as absent
    cache.invalidate_tags()


def test_tags_are_namespaced_by_prefix(make: Factory) -> None:
    a, b = make(unique("a")), make(unique("b"))
    a.set("k", 1, tags=["t"])
    b.set("k", 2, tags=["t"])
    a.invalidate_tags("t")
    assert (a.get("k"), b.get("k")) == (None, 2)
    same = make(b.prefix)
    same.invalidate_tags("t")
    assert b.get("k") is None


def test_touch_keeps_a_tagged_value_and_its_tags_alive(cache: CacheService) -> None:
    cache.set("k", "v", ttl=0.2, tags=["t"])
    assert cache.touch("k", 60) is True
    time.sleep(0.3)
    assert cache.get("k") == "v"
    left = cache.ttl("k")
    assert left is not None
    assert left > 50
    cache.invalidate_tags("t")
    assert cache.touch("k", 60) is False


def test_tagged_values_keep_their_exact_types(cache: CacheService) -> None:
    for i, value in enumerate(EXACT_VALUES):
        cache.set(f"v{i}", value, tags=["all"])
    got = cache.get_many([f"v{i}" for i in range(len(EXACT_VALUES))])
    for i, value in enumerate(EXACT_VALUES):
        assert _same(cache.get(f"v{i}"), value)
        assert _same(got[f"v{i}"], value)


@pytest.mark.parametrize("tags", [[""], [5], ["ok", None], [b"t"], ["x" * 1025],
                                  [f"t{i}" for i in range(33)], 5, {"t": 1}])
def test_bad_tags_are_refused_before_writing(cache: CacheService, tags: Any) -> None:
    with pytest.raises(ConfigurationError, match="tags"):
        cache.set("k", 1, tags=tags)
    with pytest.raises(ConfigurationError, match="tags"):
        cache.set_many({"k": 1}, tags=tags)
    with pytest.raises(ConfigurationError, match="tags"):
        cache.add("k", 1, tags=tags)
    with pytest.raises(ConfigurationError, match="tags"):
        cache.get_or_set("k", lambda: 1, tags=tags)
    assert cache.exists("k") is False
    if isinstance(tags, list) and len(tags) < 30:
        with pytest.raises(ConfigurationError, match="tags"):
            cache.invalidate_tags(*tags)


def test_a_single_str_is_one_tag(cache: CacheService) -> None:
    cache.set("k", 1, tags="user:1")
    cache.invalidate_tags("u")  # not a tag of k: "user:1" was not split into characters
    assert cache.get("k") == 1
    cache.invalidate_tags("user:1")
    assert cache.get("k") is None


def test_get_or_set_with_tags(cache: CacheService) -> None:
    calls: list[int] = []

    def load() -> dict[str, int]:
        calls.append(1)
        return {"v": len(calls)}

    assert cache.get_or_set("k", load, tags=["t"]) == {"v": 1}
    assert cache.get_or_set("k", load, tags=["t"]) == {"v": 1}
    cache.invalidate_tags("t")
    assert cache.get_or_set("k", load, tags=["t"]) == {"v": 2}
    assert cache.get_or_set("swr", load, ttl=30, stale_while_revalidate=5, tags=["t"]) == {
        "v": 3}
    assert cache.get("swr") == {"v": 3}
    cache.invalidate_tags("t")
    assert cache.get("swr") is None


def test_another_codecs_value_is_neither_read_nor_replaced(make: Factory) -> None:
    """A value a PickleCodec service wrote is a miss for a JSON service sharing the prefix,
    but a live value all the same: add refuses, incr raises, nothing replaces it."""
    prefix = unique()
    pickling = make(prefix, codec=PickleCodec(signing_key=b"contract-key-0123"))
    plain = make(prefix)
    pickling.set("d", type)  # a class: pickled, JSON cannot hold it
    assert plain.get("d", "MISS") == "MISS"
    assert plain.get_many(["d"]) == {}
    assert plain.exists("d") is False
    assert plain.add("d", 1) is False
    with pytest.raises(NotAnIntegerError):
        plain.incr("d")
    assert plain.touch("d", 100) is True
    left = plain.ttl("d")
    assert left is not None
    assert 95 < left <= 100
    assert pickling.get("d") is type


def test_get_many_unwraps_stale_while_revalidate_values_like_get(cache: CacheService) -> None:
    cache.get_or_set("fresh", lambda: [1, 2], ttl=30, stale_while_revalidate=5)
    cache.get_or_set("expiring", lambda: [3], ttl=0.1, stale_while_revalidate=5)
    cache.set("plain-list", ["\x00cache_service:swr", 1, 2, 3])  # user data, not an envelope
    assert cache.get_many(["fresh", "expiring", "plain-list"]) == {
        "fresh": [1, 2], "expiring": [3], "plain-list": ["\x00cache_service:swr", 1, 2, 3]}
    time.sleep(0.25)
    assert cache.get_many(["fresh", "expiring"]) == {"fresh": [1, 2]}  # stale: a miss
    assert cache.get("expiring") is None


def test_no_value_written_before_an_invalidation_survives_it_under_threads(
        cache: CacheService) -> None:
    """Writers keep rewriting tagged keys while another thread invalidates the tag: after
    ``invalidate_tags`` returns, no value whose write had completed before it began is read."""
    done = [0] * 4
    stop = threading.Event()
    stale: list[str] = []

    def write(n: int) -> None:
        version = 0
        while not stop.is_set():
            version += 1
            cache.set(f"k{n}", version, tags=["t"])
            done[n] = version

    writers = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for w in writers:
        w.start()
    try:
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            before = list(done)
            cache.invalidate_tags("t")
            for n in range(3):
                got = cache.get(f"k{n}")
                if got is not None and got <= before[n]:
                    stale.append(f"k{n}: {got} <= {before[n]}")
    finally:
        stop.set()
        for w in writers:
            w.join()
    assert stale == []
