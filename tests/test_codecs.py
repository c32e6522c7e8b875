"""The codec pipeline (``cache_service.codecs``), pure (no Redis): exact round trips over the
allowed types for every serializer x compressor x encryption; what each stage records in the
codec byte; corrupt, foreign, truncated, bomb, wrong-key and tampered payloads are
CorruptPayload (a miss), removed or left alone as they should be; today's payloads stay
readable under every pipeline; keys rotate; bad options name what is allowed."""

from __future__ import annotations

import itertools
import math
import os
import secrets
import uuid
import zlib
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_service import ConfigurationError, SerializationError, ValueTooLargeError
from cache_service._ops.incr import MAX_COUNTER
from cache_service.codec import (
    COMPRESSION_SHIFT,
    HEADER_SIZE,
    MAGIC,
    MSGPACK,
    PLAIN_JSON,
    SEALED,
    SIGNED_PICKLE,
    TAGGED_JSON,
    CorruptPayload,
    JsonCodec,
    PickleCodec,
    codec_name,
    lacks,
    pack,
    unpack,
)
from cache_service.codecs import PipelineCodec, build_codec
from cache_service.codecs.encryption import key_id

SIGNING_KEY = b"codecs test signing key 0123456789"
KEY_A = secrets.token_bytes(32)
KEY_B = secrets.token_bytes(32)
LIMIT = 1 << 20
STAMP = 0x123456 << 40 | 99


def codec(serializer: str = "json", compression: str | None = None, keys: Any = None,
          min_bytes: int = 0, max_bytes: int = LIMIT, **extra: Any) -> Any:
    base = PickleCodec(SIGNING_KEY) if serializer == "pickle" else None
    return build_codec(base, serializer=None if base else serializer, compression=compression,
                       compress_min_bytes=min_bytes, compression_level=None,
                       encryption_keys=keys, encryption_keys_env=extra.get("env"),
                       max_bytes=max_bytes)


PIPELINES = [
    pytest.param((s, c, k), id=f"{s}-{c or 'raw'}-{'aes' if k else 'clear'}")
    for s, c, k in itertools.product(("json", "msgpack", "pickle"),
                                      (None, "zstd", "lz4", "zlib"), (None, [KEY_A, KEY_B]))
]


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a) and \
            all(type(k) is type(j) for k, j in zip(a, b, strict=True))
    if type(a) in (set, frozenset):
        return a == b and sorted(map(repr, a)) == sorted(map(repr, b))
    return bool(a == b)


def as_msgpack(value: Any) -> Any:
    """What msgpack gives back: every type as it was, except bytearray -> bytes."""
    t = type(value)
    if t is bytearray:
        return bytes(value)
    if t in (list, tuple):
        return t(as_msgpack(v) for v in value)
    if t is dict:
        return {as_msgpack(k): as_msgpack(v) for k, v in value.items()}
    return value


keys_ = st.text(max_size=4) | st.integers() | st.tuples(st.integers()) | st.booleans()
exact = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats() | st.text(max_size=12) | st.binary(max_size=8)
    | st.binary(max_size=8).map(bytearray) | st.uuids() | st.decimals(allow_nan=False)
    | st.datetimes(timezones=st.none() | st.just(timezone.utc)) | st.dates() | st.times()
    | st.timedeltas() | st.just(...),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.dictionaries(keys_, children, max_size=4)
    | st.sets(st.integers() | st.text(max_size=3), max_size=3)
    | st.frozensets(st.integers(), max_size=3),
    max_leaves=16,
)


@pytest.mark.parametrize("pipeline", PIPELINES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=exact, big=st.booleans())
def test_exact_round_trips_through_every_pipeline(pipeline: tuple[Any, ...], value: Any,
                                                  big: bool) -> None:
    c = codec(*pipeline)
    if big:  # large and compressible: the compressor keeps its result
        value = [value, "abc" * 500]
    payload = pack(c, value, "k", LIMIT, STAMP)
    expected = as_msgpack(value) if pipeline[0] == "msgpack" else value
    assert same(unpack(c, payload, "k"), expected)
    if isinstance(c, PipelineCodec):  # the get paths' one call
        assert same(c.open_payload(payload, "k"), expected)
    _, compression, keys = pipeline
    counter = type(value) is int and abs(value) <= MAX_COUNTER  # stays plain JSON for incr
    assert bool(payload[2] & SEALED) == (bool(keys) and not counter)
    if big and compression:
        assert payload[2] >> COMPRESSION_SHIFT & 3, "compressed"
    assert codec_name(payload[2]) is not None


def test_each_stage_is_recorded_and_compression_kept_only_when_it_saves() -> None:
    c = codec("msgpack", "zstd", min_bytes=1024)
    small = pack(c, {"a": 1}, "k", LIMIT, STAMP)
    assert small[2] == MSGPACK  # under the threshold: not compressed
    big = pack(c, {"a": "x" * 4000}, "k", LIMIT, STAMP)
    assert codec_name(big[2]) == "msgpack+zstd"
    assert len(big) < 200
    noise = pack(c, os.urandom(4000), "k", LIMIT, STAMP)
    assert noise[2] == MSGPACK  # incompressible: stored as it is
    sealed = pack(codec("json", "lz4", [KEY_A]), {"a": "y" * 4000}, "k", LIMIT, STAMP)
    assert codec_name(sealed[2]) == "json+lz4+aes-gcm"
    assert sealed[HEADER_SIZE:HEADER_SIZE + 4] == key_id(KEY_A)
    assert b"yyyy" not in sealed


def test_a_plain_json_value_keeps_the_plain_header_and_its_fast_path() -> None:
    c = codec("json", "zstd", min_bytes=1024)
    assert pack(c, {"a": [1, 2]}, "k", LIMIT, STAMP)[:3] == MAGIC + bytes([PLAIN_JSON])


def test_any_reader_opens_any_value() -> None:
    writers = [codec(*p.values[0]) for p in PIPELINES]  # type: ignore[index]
    value = {"doc": "z" * 3000, "t": (1, 2), "d": date(2020, 1, 2)}
    for writer in writers:
        payload = pack(writer, value, "k", LIMIT, STAMP)
        sid = payload[2] & 7
        # any pipeline with the keys opens it (pickle payloads: one with the signing key)
        for reader in writers:
            keyring = getattr(reader, "keyring", None)
            serializer = getattr(reader, "serializer", reader)
            if (payload[2] & SEALED and keyring is None) or \
                    (sid == SIGNED_PICKLE and not isinstance(serializer, PickleCodec)):
                assert lacks(reader, payload[2])
                with pytest.raises(CorruptPayload) as info:
                    unpack(reader, payload, "k")
                assert not info.value.remove  # another service's value: left alone
            else:
                assert not lacks(reader, payload[2])
                assert same(unpack(reader, payload, "k"), value)
        # a service with no codec options reads every unencrypted one
        plain_reader = PickleCodec(SIGNING_KEY) if sid == SIGNED_PICKLE else JsonCodec()
        if not payload[2] & SEALED:
            assert same(unpack(plain_reader, payload, "k"), value)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_todays_payloads_stay_readable(pipeline: tuple[Any, ...]) -> None:
    values = [{"a": 1}, {"t": (1, 2), "u": uuid.UUID(int=5)}, "x" * 5000]
    old = [(JsonCodec(), v) for v in values] + [(PickleCodec(SIGNING_KEY), v) for v in values]
    old.append((PickleCodec(SIGNING_KEY), complex(1, 2)))  # pickled, signed
    reader = codec(*pipeline)
    for writer, value in old:
        payload = pack(writer, value, "k", LIMIT, STAMP)
        assert payload[2] in (PLAIN_JSON, TAGGED_JSON, SIGNED_PICKLE)
        if payload[2] == SIGNED_PICKLE and pipeline[0] != "pickle":
            assert lacks(reader, payload[2])
            continue
        assert same(unpack(reader, payload, "k"), value)


def test_key_rotation() -> None:
    old = codec("json", "zstd", [KEY_A])
    both = codec("json", "zstd", [KEY_B, KEY_A])  # new key writes, old one still reads
    new = codec("json", "zstd", [KEY_B])
    written_old = pack(old, {"v": 1}, "k", LIMIT, STAMP)
    written_new = pack(both, {"v": 2}, "k", LIMIT, STAMP)
    assert unpack(both, written_old, "k") == {"v": 1}
    with pytest.raises(CorruptPayload):
        unpack(old, written_new, "k")  # a reader not yet given the new key: a miss
    assert unpack(new, written_new, "k") == {"v": 2}
    with pytest.raises(CorruptPayload) as info:
        unpack(new, written_old, "k")  # retired key: a miss, left for whoever holds it
    assert not info.value.remove
    assert new.stats() == {"auth_failures": 0, "unknown_keys": 1}


def sealed_payload(value: Any = None) -> tuple[Any, bytes]:
    c = codec("json", None, [KEY_A])
    return c, pack(c, {"secret": "s" * 50} if value is None else value, "k", LIMIT, STAMP)


def test_tampered_payloads_fail_authentication_and_are_counted() -> None:
    c, payload = sealed_payload()
    tampered = [
        payload[:-1] + bytes([payload[-1] ^ 1]),  # ciphertext or tag
        payload[:5] + bytes([payload[5] ^ 1]) + payload[6:],  # the stamp (header)
        payload[:HEADER_SIZE + 5] + bytes([payload[HEADER_SIZE + 5] ^ 1])
        + payload[HEADER_SIZE + 6:],  # the nonce
    ]
    for raw in tampered:
        with pytest.raises(CorruptPayload) as info:
            unpack(c, raw, "k")
        assert info.value.remove
    with pytest.raises(CorruptPayload):  # moved to another key
        unpack(c, payload, "other")
    with pytest.raises(CorruptPayload):  # its stages changed: no longer encrypted
        unpack(c, payload[:2] + bytes([payload[2] & ~SEALED]) + payload[3:], "k")
    with pytest.raises(CorruptPayload):  # another stage claimed
        unpack(c, payload[:2] + bytes([payload[2] | 2 << COMPRESSION_SHIFT]) + payload[3:], "k")
    assert c.stats()["auth_failures"] == 5


def test_wrong_key_is_a_miss() -> None:
    _, payload = sealed_payload()
    other = codec("json", None, [KEY_B])
    with pytest.raises(CorruptPayload) as info:
        unpack(other, payload, "k")
    assert not info.value.remove  # written under a key this service lacks
    for reader in (JsonCodec(), PickleCodec(SIGNING_KEY), codec("msgpack", "zstd")):
        with pytest.raises(CorruptPayload) as info:
            unpack(reader, payload, "k")
        assert not info.value.remove
        assert lacks(reader, payload[2])


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_corrupt_foreign_and_truncated_payloads_are_misses(pipeline: tuple[Any, ...]) -> None:
    c = codec(*pipeline)
    good = pack(c, {"a": "q" * 3000, "b": (1,)}, "k", LIMIT, STAMP)
    bad = [good[:n] for n in (0, 1, 2, 3, 10, HEADER_SIZE, HEADER_SIZE + 3, len(good) - 1)]
    bad += [good[:HEADER_SIZE] + os.urandom(40), b"plain text", b"\xc5\x01" + os.urandom(30)]
    bad += [MAGIC + bytes([cid]) + good[3:] for cid in range(0x40)]
    opener = c.open_payload if isinstance(c, PipelineCodec) else partial(unpack, c)
    for raw in bad:
        assert outcome(opener, raw) == outcome(partial(unpack, c), raw)


def outcome(opener: Any, raw: bytes) -> Any:
    """A value, or how a miss is handled: (remove, foreign); never another error."""
    try:
        return opener(raw, "k")
    except CorruptPayload as exc:
        return ("miss", exc.remove, exc.foreign)


def test_the_get_paths_opener_refuses_what_unpack_refuses_and_counts_once() -> None:
    c, payload = sealed_payload()
    tampered = payload[:-1] + bytes([payload[-1] ^ 1])
    assert outcome(c.open_payload, tampered) == ("miss", True, False)
    assert outcome(c.open_payload, payload[:HEADER_SIZE + 31]) == ("miss", True, False)
    assert c.stats() == {"auth_failures": 1, "unknown_keys": 0}  # truncated: not counted
    assert outcome(codec("json", None, [KEY_B]).open_payload, payload) == ("miss", False, False)
    assert outcome(c.open_payload, b"plain text") == ("miss", False, True)
    # small and large (a body past 4 KB is read through a memoryview), compressed or not
    values = [{"b": b"\x00" * 2000, "t": (1, 2)}, {"b": os.urandom(6000), "t": (1, 2)},
              [secrets.token_hex(6000), b"x"]]
    for pipeline in (("msgpack", None, None), ("msgpack", "zstd", [KEY_A]), ("json", "lz4", None),
                     ("pickle", "zlib", None), ("msgpack", "zlib", None)):
        c = codec(*pipeline)
        for value in values:
            payload = pack(c, value, "k", LIMIT, STAMP)
            got = c.open_payload(payload, "k")
            assert same(got, as_msgpack(value))  # bytes come back as bytes, not reply views
            assert outcome(c.open_payload, payload[:-3]) == outcome(partial(unpack, c),
                                                                    payload[:-3])


@pytest.mark.parametrize("compression", ["zstd", "lz4", "zlib"])
@pytest.mark.parametrize("keys", [None, [KEY_A]])
def test_a_decompression_bomb_is_a_miss(compression: str, keys: Any) -> None:
    writer = codec("json", compression, keys, max_bytes=64 * LIMIT)
    reader = codec("json", compression, keys, max_bytes=LIMIT)
    bomb = pack(writer, "a" * (8 * LIMIT), "k", 64 * LIMIT, STAMP)
    assert len(bomb) < LIMIT // 16
    for opener in (partial(unpack, reader), reader.open_payload):
        with pytest.raises(CorruptPayload, match="inflates past") as info:
            opener(bomb, "k")
        assert info.value.remove
    fits = pack(writer, "a" * (LIMIT - 100), "k", 64 * LIMIT, STAMP)
    assert unpack(reader, fits, "k") == "a" * (LIMIT - 100)


def test_a_zlib_bomb_without_our_writer_is_a_miss() -> None:
    body = zlib.compress(b'"' + b"a" * (4 * LIMIT) + b'"')
    raw = MAGIC + bytes([PLAIN_JSON | 1 << COMPRESSION_SHIFT]) \
        + STAMP.to_bytes(8, "big") + body
    with pytest.raises(CorruptPayload, match="inflates past"):
        unpack(codec("json", "zstd"), raw, "k")
    with pytest.raises(CorruptPayload, match="inflates past"):
        unpack(JsonCodec(), raw[:HEADER_SIZE] + zlib.compress(b" " * (64 * LIMIT)), "k")


def test_a_value_over_max_value_bytes_before_compression_is_refused() -> None:
    c = codec("json", "zstd", max_bytes=1000)
    with pytest.raises(ValueTooLargeError, match="max_value_bytes=1000"):
        c.encode("a" * 2000, "k")


def test_msgpack_refuses_what_it_cannot_store_exactly() -> None:
    c = codec("msgpack")
    for value in (object(), {"a": complex(1, 2)}, [datetime], type("S", (str,), {})("s")):
        with pytest.raises(SerializationError):
            c.encode(value, "k")


def test_msgpack_keeps_every_exact_type() -> None:
    c = codec("msgpack")
    value = {(1, 2): {frozenset({1}): [set(), b"b", (bytearray(b"c"),)]}, 1: 2**100,
             "t": time(1, 2, 3, 4), "td": timedelta(-3, 5), "dt": datetime.now(timezone.utc),
             "dec": Decimal("-0.000"), "e": ..., "u": uuid.uuid4(), "f": -0.0, 2.5: None}
    assert same(unpack(c, pack(c, value, "k", LIMIT, STAMP), "k"), as_msgpack(value))


@pytest.mark.parametrize(("options", "needle"), [
    ({"serializer": "yaml"}, "serializer must be one of json, msgpack, pickle"),
    ({"compression": "brotli"}, "compression must be one of zstd, lz4, zlib, none"),
    ({"compression": "django_redis.compressors.lzma.LzmaCompressor"}, "compression must be"),
    ({"compress_min_bytes": -1}, "compress_min_bytes must be an int >= 0"),
    ({"compression": "zlib", "compression_level": "max"}, "compression_level must be an int"),
    ({"compression": "zlib", "compression_level": 42}, "compression_level=42 is refused"),
    ({"encryption_keys": "short"}, "encryption key is 32 random bytes"),
    ({"encryption_keys": [b"\0" * 32]}, "encryption key is 32 random bytes"),
    ({"encryption_keys": []}, "no key given"),
    ({"encryption_keys": 5}, "give a key or a list of keys"),
    ({"encryption_keys_env": "CACHE_SERVICE_TEST_UNSET_VAR"}, "is not set"),
    ({"serializer": "pickle"}, "PickleCodec(signing_key=...)"),
])
def test_bad_options_name_what_is_allowed(options: dict[str, Any], needle: str) -> None:
    from cache_service import CacheService

    with pytest.raises(ConfigurationError) as info:
        CacheService("opts", url="memory://", **options)
    assert needle in str(info.value)


def test_conflicting_options() -> None:
    from cache_service import CacheService

    with pytest.raises(ConfigurationError, match="conflicts with codec"):
        CacheService("opts", url="memory://", serializer="msgpack", codec=JsonCodec())
    with pytest.raises(ConfigurationError, match="not both"):
        CacheService("opts", url="memory://", encryption_keys=[KEY_A],
                     encryption_keys_env="X")


def test_keys_from_text_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    monkeypatch.setenv("CACHE_SERVICE_TEST_KEYS",
                       f"{KEY_B.hex()}, {base64.urlsafe_b64encode(KEY_A).decode()}")
    from_env = codec("json", None, env="CACHE_SERVICE_TEST_KEYS")
    from_list = codec("json", None, [KEY_A])
    assert unpack(from_env, pack(from_list, [1], "k", LIMIT, STAMP), "k") == [1]
    assert pack(from_env, [1], "k", LIMIT, STAMP)[HEADER_SIZE:HEADER_SIZE + 4] == key_id(KEY_B)
    assert KEY_B.hex() not in repr(from_env)
    assert KEY_B.hex() not in repr(from_env.keyring)


def test_django_redis_names_map() -> None:
    c = build_codec(None, serializer="django_redis.serializers.msgpack.MSGPackSerializer",
                    compression="django_redis.compressors.zstd.ZStdCompressor",
                    compress_min_bytes=0, compression_level=None, encryption_keys=None,
                    encryption_keys_env=None, max_bytes=LIMIT)
    assert isinstance(c, PipelineCodec)
    assert codec_name(pack(c, "a" * 3000, "k", LIMIT, STAMP)[2]) == "msgpack+zstd"
    none = build_codec(None, serializer=None,
                       compression="django_redis.compressors.identity.IdentityCompressor",
                       compress_min_bytes=0, compression_level=None, encryption_keys=None,
                       encryption_keys_env=None, max_bytes=LIMIT)
    assert type(none) is JsonCodec  # nothing asked for: today's codec, today's hot path


def test_no_option_leaves_the_given_codec() -> None:
    pickle_codec = PickleCodec(SIGNING_KEY)
    assert build_codec(pickle_codec, serializer=None, compression=None, compress_min_bytes=1024,
                       compression_level=None, encryption_keys=None, encryption_keys_env=None,
                       max_bytes=LIMIT) is pickle_codec
