"""Hostile data in Redis: whatever sits at a key, reading it is a value or a miss, never an error.

A raw client writes, under a service's prefix, random bytes after a valid header (every codec
id, tagged or not), bodies that parse as JSON but are malformed for the tagged codec (wrong
arities, unknown tags, bad decimals, huge timedeltas, non-latin-1 tokens, empty tag lists...),
truncated and bit-flipped payloads of real values, strings without our header, and foreign
Redis types. Then ``get`` (sync, async, near cache), ``get_many``, ``get_or_set``, ``exists``,
``ttl``, ``add``, ``touch``, ``incr`` and the CLI's ``get`` read it: a hit or a miss (or the
documented NotAnIntegerError for incr), the breaker never moves, and foreign keys are still
there, unchanged, afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_service import CacheService, NotAnIntegerError, PickleCodec
from cache_service._ops.tags import TAGGED
from cache_service.aio import AsyncCacheService
from cache_service.cli import main
from cache_service.codec import MAGIC, PLAIN_JSON, SIGNED_PICKLE, TAGGED_JSON

from .helpers import unique
from .servers import RedisServer

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
MISS: Any = object()
STAMP = (0x123456 << 40 | 7).to_bytes(8, "big")
CODEC_IDS = st.one_of(st.sampled_from([PLAIN_JSON, TAGGED_JSON, SIGNED_PICKLE]),
                      st.sampled_from([PLAIN_JSON | TAGGED, TAGGED_JSON | TAGGED,
                                       SIGNED_PICKLE | TAGGED]),
                      st.integers(0, 255))

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                        st.floats(allow_nan=False), st.text(max_size=8))
JSON = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)
UNTAGGERS = ["int", "float", "map", "tuple", "set", "frozenset", "bytes", "bytearray",
             "datetime", "date", "time", "timedelta", "uuid", "decimal", "ellipsis", "nope"]
# A tagged-codec body: {"\x00": [name, payload]} with payloads that fit the name or not.
TAGGED_VALUE = st.one_of(
    st.builds(lambda n, p: {"\x00": [n, p]}, st.sampled_from(UNTAGGERS), JSON),
    st.builds(lambda p: {"\x00": p}, JSON),
    st.sampled_from([{"\x00": ["decimal", "abc"]}, {"\x00": ["timedelta", [10**18, 0, 0]]},
                     {"\x00": ["int", "9" * 5000]}, {"\x00": ["map", [[[1], 2]]]},
                     {"\x00": ["set", [[1]]]}, {"\x00": ["bytes", "%%%"]},
                     {"\x00": ["datetime", 5]}, {"\x00": ["timedelta", [1]]}]),
)
SWR = st.builds(lambda fresh, value: ["\x00cache_service:swr", 0x123456 << 40 | 7, fresh, value],
                JSON, JSON)


def header(codec_id: int) -> bytes:
    return MAGIC + bytes([codec_id]) + STAMP


def tag_section(meta: bytes) -> bytes:
    return len(meta).to_bytes(4, "big") + meta


TAG_META = st.one_of(
    st.builds(orjson.dumps, JSON),
    st.builds(lambda tags, tokens: orjson.dumps([tags, tokens]),
              st.lists(st.text(max_size=6), max_size=3), st.lists(st.text(max_size=6),
                                                                   max_size=3)),
    st.sampled_from([b"[[],[]]", b'[["t"],["\\u0100"]]', b'[["t"],[5]]', b'[["t","t"],["a","b"]]',
                     b'[[""],["a"]]', b'"xx"', b"[1,2]", b"{}"]),
    st.binary(max_size=20),
)

PAYLOADS = st.one_of(
    st.builds(lambda c, body: header(c) + body, CODEC_IDS, st.binary(max_size=64)),
    st.builds(lambda v: header(TAGGED_JSON) + orjson.dumps(v), TAGGED_VALUE),
    st.builds(lambda v: header(TAGGED_JSON) + orjson.dumps(v), st.lists(TAGGED_VALUE,
                                                                        max_size=3)),
    st.builds(lambda v: header(PLAIN_JSON) + orjson.dumps(v), SWR),
    st.builds(lambda c, meta, body: header(c | TAGGED) + tag_section(meta) + body,
              st.sampled_from([PLAIN_JSON, TAGGED_JSON]), TAG_META, st.binary(max_size=16)),
    st.builds(lambda c, size, rest: header(c | TAGGED) + size.to_bytes(4, "big") + rest,
              st.sampled_from([PLAIN_JSON, TAGGED_JSON]), st.integers(0, 2**32 - 1),
              st.binary(max_size=16)),
    st.builds(lambda n: MAGIC + bytes(n), st.integers(0, 12)),  # truncated headers
)
FOREIGN_STRINGS = st.one_of(st.binary(max_size=32).filter(lambda b: b[:2] != MAGIC),
                            st.sampled_from([b"", b"plain", b"\xc5", b"\xc5\x01", MAGIC + b"\x01"]))


class World:
    """Services of several kinds on one Redis, a raw client, and an event loop."""

    def __init__(self, server: RedisServer) -> None:
        self.url = server.url
        self.raw: redis.Redis = server.client()
        self.loop = asyncio.new_event_loop()
        self.prefix = unique("fuzz")
        options: dict[str, Any] = {"socket_timeout": 2.0, "connect_timeout": 2.0}
        self.json = CacheService(self.prefix, url=self.url, **options)
        self.pickle = CacheService(self.prefix, url=self.url,
                                   codec=PickleCodec(b"reply-fuzz signing key 0123456789"))
        self.near = CacheService(self.prefix, url=self.url, near_cache=True)
        self.aio = AsyncCacheService(self.prefix, url=self.url)
        self.before = self.breaker()

    def breaker(self) -> tuple[Any, ...]:
        target = self.json.stats()["target"]
        return (target["backend"], target["breaker_opened"], target["errors"],
                target["misconfiguration"])


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with RedisServer(name="fuzz") as server:
        w = World(server)
        yield w
        for svc in (w.json, w.pickle, w.near):
            svc.close()
        w.loop.run_until_complete(w.aio.aclose())
        w.loop.close()


def read_everything(w: World, key: str) -> None:
    """Every read path of every service; each must return, never raise (incr: documented)."""
    for svc in (w.json, w.pickle, w.near):
        svc.get(key, MISS)
        svc.get_many([key, "absent"])
        svc.exists(key)
        svc.ttl(key)
        with contextlib.suppress(NotAnIntegerError):
            svc.incr(key, 0)
    w.loop.run_until_complete(w.aio.get(key, MISS))
    w.loop.run_until_complete(w.aio.get_many([key]))
    result = CliRunner().invoke(main, ["get", w.prefix, key, "--redis-url", w.url])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output


@SETTINGS
@given(payload=PAYLOADS)
def test_any_payload_with_our_header_is_a_value_or_a_miss(world: World, payload: bytes) -> None:
    key = "junk"
    world.raw.set(world.json.full_key(key), payload, px=60_000)
    read_everything(world, key)
    world.raw.set(world.json.full_key(key), payload, px=60_000)
    assert world.json.get_or_set(key, lambda: "loaded") is not None
    world.raw.set(world.json.full_key(key), payload, px=60_000)
    world.json.add(key, 1)
    world.json.touch(key, 10)
    assert world.breaker() == world.before


@SETTINGS
@given(value=JSON, cut=st.integers(0, 200), flip=st.integers(0, 2000), tagged=st.booleans())
def test_truncated_or_garbled_real_payloads_are_values_or_misses(
        world: World, value: Any, cut: int, flip: int, tagged: bool) -> None:
    key = "real"
    full = world.json.full_key(key)
    world.json.set(key, [value, (1, 2)], tags=["t1", "t2"] if tagged else ())
    good = world.raw.get(full)
    assert good is not None
    for bad in (good[:cut], good[:flip % len(good)] + bytes([good[flip % len(good)] ^ 0xFF])
                + good[flip % len(good) + 1:]):
        world.raw.set(full, bad, px=60_000)
        read_everything(world, key)
    assert world.breaker() == world.before


@SETTINGS
@given(junk=FOREIGN_STRINGS, kind=st.sampled_from(["string", "hash", "list", "set", "zset"]))
def test_foreign_keys_are_misses_and_left_alone(world: World, junk: bytes, kind: str) -> None:
    key = f"foreign-{kind}"
    full = world.json.full_key(key)
    world.raw.delete(full)
    write = {"string": lambda: world.raw.set(full, junk),
             "hash": lambda: world.raw.hset(full, "f", junk),
             "list": lambda: world.raw.rpush(full, junk),
             "set": lambda: world.raw.sadd(full, junk),
             "zset": lambda: world.raw.zadd(full, {junk: 1.0})}
    write[kind]()
    dump = world.raw.dump(full)
    read_everything(world, key)
    for svc in (world.json, world.pickle, world.near):
        assert svc.get(key, MISS) is MISS
        assert svc.get_many([key]) == {}
        assert svc.exists(key) is False
        assert svc.ttl(key) is None
        assert svc.add(key, 1) is False
        assert svc.touch(key) is False
        assert svc.get_or_set(key, lambda: "loaded") == "loaded"  # served, not stored over it
    assert world.loop.run_until_complete(world.aio.get(key, MISS)) is MISS
    assert world.raw.dump(full) == dump, "a foreign key was changed"
    assert world.breaker() == world.before


@SETTINGS
@given(payloads=st.lists(st.one_of(PAYLOADS, FOREIGN_STRINGS,
                                   st.builds(lambda v: header(PLAIN_JSON) + orjson.dumps(v), JSON),
                                   st.none()), min_size=1, max_size=12))
def test_a_batch_reads_each_payload_as_a_single_get_does(
        world: World, payloads: list[bytes | None]) -> None:
    """get_many decodes a whole reply at once when it can: whatever the mix (misses, plain
    values, envelopes, corrupt or foreign payloads), each key is what get says it is."""
    keys = [f"batch-{i}" for i in range(len(payloads))]

    def write() -> None:
        for key, payload in zip(keys, payloads, strict=True):
            full = world.json.full_key(key)
            if payload is None:
                world.raw.delete(full)
            else:
                world.raw.set(full, payload, px=60_000)

    write()
    batch = world.json.get_many(keys)
    write()
    single = {key: world.json.get(key, MISS) for key in keys}
    assert batch == {key: value for key, value in single.items() if value is not MISS}
    write()
    assert world.loop.run_until_complete(world.aio.get_many(keys)) == batch
    assert world.breaker() == world.before


def test_a_tagged_payload_with_an_empty_tag_section_is_a_miss(world: World) -> None:
    """The case that opened the breaker: an MGET with no keys."""
    full = world.json.full_key("empty-tags")
    world.raw.set(full, header(PLAIN_JSON | TAGGED) + tag_section(b"[[],[]]") + b"1")
    assert world.json.get("empty-tags", MISS) is MISS
    assert world.json.get_many(["empty-tags"]) == {}
    assert world.breaker() == world.before
