"""JsonCodec's choice between plain JSON, the tagged form and refusal, pinned against the rule
it implements (pure, no Redis): any faster exactness check must decide exactly as this one.

Note: the rule (decode and compare) lets an ``IntEnum`` or ``str``-mixin ``Enum`` member through
as plain JSON, since it equals its value, so it comes back as that int or str. That is today's
behaviour, pinned here like the rest; whether to refuse them is a separate question."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_service import SerializationError
from cache_service.codec import _ORJSON_OPTS, PLAIN_JSON, JsonCodec, _tag


def reference(value: Any) -> tuple[int, bytes] | str:
    """The rule as it was before the fast check: plain orjson when decoding gives back an
    equal value, else the tagged form, else refused."""
    try:
        body = orjson.dumps(value, option=_ORJSON_OPTS)
    except orjson.JSONEncodeError:
        pass
    else:
        if type(value) in (str, bool) or value is None or orjson.loads(body) == value:
            return PLAIN_JSON, body
    try:
        return 2, orjson.dumps(_tag(value))
    except (SerializationError, RecursionError, orjson.JSONEncodeError):
        return "refused"


def encoded(value: Any) -> tuple[int, bytes] | str:
    try:
        return JsonCodec().encode(value, "k")
    except SerializationError:
        return "refused"


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    LOW = 1


class Name(str, enum.Enum):
    A = "a"


class Text(str):
    pass


deep: list[Any] = []
for _ in range(300):
    deep = [deep]

CASES: list[Any] = [
    {"a": 1}, [1, "a", None, True, 1.5], {"a": [1, {"b": None}]}, [], {}, [[]], [{}],
    (1, 2), [(1,)], {"a": {"b": (1,)}}, {1: "a"}, {"a": {1: "a"}}, {"a": {"\x00": 1}},
    {"\x00": "tag-like"}, [float("nan")], {"a": float("inf")}, [1.0, None],
    {"n": None, "f": -0.0}, {"s": "null", "f": 1.5}, [float("-inf"), "null"],
    [2**64], [2**64 - 1], [-(2**63)], [-(2**63) - 1], {"a": uuid.UUID(int=1)},
    [datetime(2024, 1, 1, tzinfo=timezone.utc)], [Decimal("1.1")], [b"x"], [bytearray(b"x")],
    [{1, 2}], [frozenset()], [Color.RED], [Level.LOW], {"a": Name.A}, [Text("x")],
    {Text("k"): 1}, [orjson.Fragment(b"[1]")], ["\ud800"], {"\ud800": 1}, [...], deep,
    [object()], {"f": len}, [1, [2, [3, [4, [5, (6,)]]]]],
]


@pytest.mark.parametrize("value", CASES, ids=lambda v: type(v).__name__)
def test_encode_decides_as_decoding_does(value: Any) -> None:
    assert encoded(value) == reference(value)


native = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**65)
    | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=4), children, max_size=5),
    max_leaves=30,
)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.binary(max_size=4) | st.uuids() | st.datetimes() | st.decimals()
    | st.sampled_from([Color.RED, Level.LOW, Name.A, Text("t"), ...]),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=4)
    | st.frozensets(st.integers(), max_size=3),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(value=native)
def test_encode_decides_as_decoding_does_on_json_values(value: Any) -> None:
    assert encoded(value) == reference(value)


@settings(max_examples=400, deadline=None)
@given(value=anything)
def test_encode_decides_as_decoding_does_on_any_value(value: Any) -> None:
    assert encoded(value) == reference(value)
