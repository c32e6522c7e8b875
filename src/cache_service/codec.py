"""How values become bytes: a small versioned header, then a codec body.

Payload layout (11-byte header)::

    0xC5 0x01 | codec id (1 byte) | stamp (8 bytes, big-endian) | body

The stamp is ``writer id (24 bits) << 40 | sequence (40 bits)``: unique per write of this
process, so a write that timed out and lands late can be recognised (see ``journal``).
Codec ids: 1 plain JSON (orjson), 2 tagged JSON (exact tuple/set/bytes/datetime/... types),
3 HMAC-signed pickle, 4 msgpack (exact types). The codec byte also records the optional stages of
``cache_service.codecs`` (bits 3-4: compressor, bit 5: AES-GCM; bit 7 is the tag bit of
``_ops.tags``), so ids 1-3 alone are today's payloads, readable by every version.
A payload that does not parse is a miss, never an exception.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import math
import os
import pickle
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol, cast

import orjson

from cache_service.errors import ConfigurationError, SerializationError, ValueTooLargeError
from cache_service.forking import at_fork_child

__all__ = ["Codec", "CorruptPayload", "JsonCodec", "PickleCodec", "Stamper", "check_signing_key"]

MAGIC = b"\xc5\x01"
HEADER_SIZE = 11
PLAIN_JSON, TAGGED_JSON, SIGNED_PICKLE, MSGPACK = 1, 2, 3, 4
SERIALIZER_BITS = 0x07  # the serializer's id
COMPRESSION_SHIFT = 3  # bits 3-4: 0 none, 1 zlib, 2 zstd, 3 lz4
SEALED = 0x20  # AES-256-GCM over the (compressed) body; header and key bound in
STAGE_BITS = 0x40  # ids at or above this are no stage layout of ours (0x80: tags)
SERIALIZER_NAMES = {PLAIN_JSON: "json", TAGGED_JSON: "json+types", SIGNED_PICKLE: "signed pickle",
                    MSGPACK: "msgpack"}
COMPRESSOR_NAMES = {1: "zlib", 2: "zstd", 3: "lz4"}
_TAG = "\x00"
_ORJSON_OPTS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
Buffer = bytes | memoryview  # a body read in place (the stages of ``cache_service.codecs``)
# From this many bytes a stage reads a payload's body through a memoryview rather than a copy
# (below it the copy costs fewer instructions than the view: counted with callgrind).
VIEW_FROM = 4096
ALLOWED_TYPES = (
    "str, int, float, bool, None, list, dict (str keys, or any keys of these types), tuple, set, "
    "frozenset, bytes, bytearray, datetime, date, time, timedelta, UUID, Decimal and Ellipsis"
)


def known_codec_id(codec_id: int) -> bool:
    """Whether ``codec_id`` is a codec byte some version of this package writes (untagged)."""
    return codec_id < STAGE_BITS and codec_id & SERIALIZER_BITS in SERIALIZER_NAMES


def codec_name(codec_id: int) -> str | None:
    """``codec_id``'s stages as text (``msgpack+zstd+aes-gcm``), or None if it is not ours."""
    if not known_codec_id(codec_id):
        return None
    parts = [SERIALIZER_NAMES[codec_id & SERIALIZER_BITS]]
    compressor = codec_id >> COMPRESSION_SHIFT & 3
    if compressor:
        parts.append(COMPRESSOR_NAMES[compressor])
    if codec_id & SEALED:
        parts.append("aes-gcm")
    return "+".join(parts)


class CorruptPayload(Exception):
    """A stored payload is not one of ours or does not decode: the caller sees a miss.

    ``remove`` is False for a sound payload in a codec this service lacks (another service
    sharing the prefix wrote it): a miss here, but not ours to delete. ``foreign``: not a
    payload of ours at all (no header): a miss, left alone.
    """

    def __init__(self, message: str, remove: bool = True, foreign: bool = False) -> None:
        super().__init__(message)
        self.remove = remove and not foreign
        self.foreign = foreign


class Stamper:
    """Issues per-write stamps: a random writer id per process and a rising sequence."""

    def __init__(self) -> None:
        self.reset()
        at_fork_child(self.reset, 10)

    def reset(self) -> None:
        """Pick a fresh writer id (after fork the child must not reuse the parent's)."""
        self.writer = int.from_bytes(os.urandom(3), "big")
        self._base = self.writer << 40
        self._counter = itertools.count(1)

    def next(self) -> int:
        """A stamp greater than every stamp this process issued before."""
        return self._base | (next(self._counter) & 0xFF_FFFF_FFFF)

    def mine(self, stamp: int) -> bool:
        """Whether ``stamp`` was issued by this process."""
        return stamp >> 40 == self.writer


STAMPER = Stamper()


def stamp_of(raw: bytes) -> int:
    """The stamp in a payload's header."""
    return int.from_bytes(raw[3:HEADER_SIZE], "big")


class Codec(Protocol):
    """Turns values into a (codec id, body) pair and back; ``key`` lets a codec bind to it."""

    def encode(self, value: Any, key: str) -> tuple[int, bytes]: ...

    def decode(self, codec_id: int, body: bytes, key: str) -> Any: ...


def _tag(value: Any) -> Any:
    """Rewrite a value into JSON-native data, tagging every type JSON would change."""
    t = type(value)
    if value is None or t is str or t is bool:
        return value
    if t is int:
        return value if _INT_MIN <= value <= _INT_MAX else {_TAG: ["int", str(value)]}
    if t is float:
        return value if math.isfinite(value) else {_TAG: ["float", repr(value)]}
    if t is list:
        return [_tag(v) for v in value]
    if t is dict:
        if all(type(k) is str for k in value) and not (len(value) == 1 and _TAG in value):
            return {k: _tag(v) for k, v in value.items()}
        return {_TAG: ["map", [[_tag(k), _tag(v)] for k, v in value.items()]]}
    tagger = _TAGGERS.get(t)
    if tagger is None:
        raise SerializationError(
            f"cannot cache a value of type {t.__module__}.{t.__qualname__}: the JSON codec "
            f"stores {ALLOWED_TYPES}; use PickleCodec(signing_key=...) for other types"
        )
    name, encode = tagger
    return {_TAG: [name, encode(value)]}


_TAGGERS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    tuple: ("tuple", lambda v: [_tag(x) for x in v]),
    set: ("set", lambda v: [_tag(x) for x in v]),
    frozenset: ("frozenset", lambda v: [_tag(x) for x in v]),
    bytes: ("bytes", lambda v: base64.b64encode(v).decode()),
    bytearray: ("bytearray", lambda v: base64.b64encode(v).decode()),
    datetime: ("datetime", lambda v: v.isoformat()),
    date: ("date", lambda v: v.isoformat()),
    time: ("time", lambda v: v.isoformat()),
    timedelta: ("timedelta", lambda v: [v.days, v.seconds, v.microseconds]),
    uuid.UUID: ("uuid", str),
    Decimal: ("decimal", str),
    type(Ellipsis): ("ellipsis", lambda v: None),  # the usage contract caches [...]
}

_UNTAGGERS: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "float": float,
    "map": lambda v: {_untag(k): _untag(x) for k, x in v},
    "tuple": lambda v: tuple(_untag(x) for x in v),
    "set": lambda v: {_untag(x) for x in v},
    "frozenset": lambda v: frozenset(_untag(x) for x in v),
    "bytes": base64.b64decode,
    "bytearray": lambda v: bytearray(base64.b64decode(v)),
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "timedelta": lambda v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": uuid.UUID,
    "decimal": Decimal,
    "ellipsis": lambda v: ...,
}


def _untag(value: Any) -> Any:
    t = type(value)
    if t is list:
        return [_untag(v) for v in value]
    if t is dict:
        if len(value) == 1 and _TAG in value:
            name, payload = value[_TAG]
            return _UNTAGGERS[name](payload)
        return {k: _untag(v) for k, v in value.items()}
    return value


# Opens payloads with stages (msgpack, compression) for a JsonCodec or PickleCodec of a service
# with no codec options, so any service reads what another wrote: ``cache_service.codecs``
# sets it when imported (the services import it). Arguments: the codec, codec id, body, key.
STAGE_READER: list[Callable[[Any, int, bytes, str], Any]] = []
STAGE_OPENS: list[Callable[[Any, int], bool]] = []  # whether that reader opens an id


class JsonCodec:
    """JSON via orjson; values JSON would change (tuple, UUID, ...) take a tagged form."""

    def encode(self, value: Any, key: str) -> tuple[int, bytes]:
        """Plain orjson when that round-trips exactly, else the tagged form."""
        try:
            body = orjson.dumps(value, option=_ORJSON_OPTS)
        except orjson.JSONEncodeError:
            pass
        else:
            t = type(value)
            if t is str or t is bool or value is None or orjson.loads(body) == value:
                return PLAIN_JSON, body
        try:
            return TAGGED_JSON, orjson.dumps(_tag(value))
        except RecursionError:
            raise SerializationError("cannot cache a value nested this deeply") from None
        except orjson.JSONEncodeError as exc:
            raise SerializationError(f"cannot cache this value: {exc}") from None

    def decode(self, codec_id: int, body: bytes, key: str) -> Any:
        """Decode codec ids 1 and 2; anything else is not ours to read."""
        try:
            if codec_id == PLAIN_JSON:
                return orjson.loads(body)
            if codec_id == TAGGED_JSON:
                return _untag(orjson.loads(body))
        except Exception as exc:  # anyone who can write to Redis chooses these bytes
            raise CorruptPayload(f"undecodable JSON payload ({type(exc).__name__})") from None
        if STAGE_READER and known_codec_id(codec_id) and not codec_id & SEALED:
            return STAGE_READER[0](self, codec_id, body, key)
        raise CorruptPayload(f"payload codec {codec_id} needs a codec this service lacks",
                             remove=not known_codec_id(codec_id))

    def opens(self, codec_id: int) -> bool:
        """Whether this codec decodes payloads of ``codec_id`` (stages: with what is
        installed)."""
        if codec_id in (PLAIN_JSON, TAGGED_JSON):
            return True
        return bool(STAGE_READER) and known_codec_id(codec_id) and not codec_id & SEALED \
            and codec_id & SERIALIZER_BITS != SIGNED_PICKLE and STAGE_OPENS[0](self, codec_id)


# A signing key must not be guessable: anyone who can compute it and write to Redis runs code
# in every process that unpickles. The rule is short so it can be stated in an error message.
MIN_KEY_BYTES = 16
MIN_KEY_DISTINCT = 5  # as Django's check of SECRET_KEY: 32 zero bytes or "abab..." is no key


def check_signing_key(key: object, setting: str = "signing_key") -> bytes:
    """``key`` as bytes if it is strong enough to sign pickles (16+ bytes, 5+ different byte
    values), else a ConfigurationError naming ``setting`` (never the key itself)."""
    if isinstance(key, bytearray):
        key = bytes(key)
    if isinstance(key, str):
        try:
            key = key.encode()
        except UnicodeEncodeError:
            key = None
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES or \
            len(set(key)) < MIN_KEY_DISTINCT:
        raise ConfigurationError(
            f"{setting}: a signing key must be bytes or text of at least {MIN_KEY_BYTES} bytes "
            f"with at least {MIN_KEY_DISTINCT} different byte values (e.g. "
            "secrets.token_hex(32)); a missing or guessable key would let anyone who can write "
            "to Redis run code in this process"
        )
    return key


class PickleCodec(JsonCodec):
    """JSON where it round-trips exactly, else pickle signed with HMAC-SHA256 (key + payload).

    Every service sharing these keys needs the same signing key; a payload whose signature
    does not verify is a miss, logged and removed.
    """

    def __init__(self, signing_key: bytes | str) -> None:
        self._key = check_signing_key(signing_key)

    def __repr__(self) -> str:
        return "PickleCodec(signing_key=***)"

    def _sign(self, key: str, body: bytes | memoryview) -> bytes:
        k = key.encode()
        msg = len(k).to_bytes(4, "big") + k + bytes(body)
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def encode(self, value: Any, key: str) -> tuple[int, bytes]:
        """JSON if the value allows it, else signed pickle (protocol 5)."""
        try:
            return super().encode(value, key)
        except SerializationError:
            pass
        try:
            body = pickle.dumps(value, protocol=5)
        except Exception as exc:  # pickle raises many types
            raise SerializationError(f"cannot pickle {type(value).__name__}: {exc}") from None
        return SIGNED_PICKLE, self._sign(key, body) + body

    def decode(self, codec_id: int, body: bytes, key: str) -> Any:
        """Verify the signature before unpickling; JSON payloads decode as JsonCodec's."""
        if codec_id != SIGNED_PICKLE:
            return super().decode(codec_id, body, key)
        signature, data = body[:32], body[32:]
        if not hmac.compare_digest(signature, self._sign(key, data)):
            raise CorruptPayload("pickle payload failed its HMAC check")
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise CorruptPayload(f"signed pickle did not load ({type(exc).__name__})") from None

    def opens(self, codec_id: int) -> bool:
        """Whether this codec decodes payloads of ``codec_id``."""
        if codec_id == SIGNED_PICKLE:
            return True
        if codec_id & SERIALIZER_BITS == SIGNED_PICKLE:
            return bool(STAGE_READER) and not codec_id & SEALED and \
                STAGE_OPENS[0](self, codec_id)
        return super().opens(codec_id)


class Sealer(Protocol):
    """A codec whose payloads with the ``SEALED`` bit are encrypted with the header bound in:
    ``pack`` hands it the header, ``unpack`` the whole payload."""

    def seal(self, head: bytes, body: bytes, key: str) -> bytes: ...

    def unseal(self, raw: bytes, key: str) -> Any: ...


def lacks(codec: Codec, codec_id: int) -> bool:
    """Whether ``codec_id`` is a sound payload kind of ours that ``codec`` cannot open (a
    value of another service sharing the prefix: a miss here, not ours to replace)."""
    if not known_codec_id(codec_id):
        return False
    opens = getattr(codec, "opens", None)
    if opens is not None:
        return not opens(codec_id)
    return codec_id not in (PLAIN_JSON, TAGGED_JSON)


_PREFIXES = {cid: MAGIC + bytes([cid]) for cid in range(1, STAGE_BITS)}


# A plain JSON payload of ours starts with this; both codecs decode it with orjson.loads of
# what follows the header (the hot paths do so inline).
PLAIN_HEADER = _PREFIXES[PLAIN_JSON]
PLAIN_CODECS = (JsonCodec, PickleCodec)


def pack(codec: Codec, value: Any, key: str, max_bytes: int, stamp: int) -> bytes:
    """Encode ``value`` for ``key`` with a header; raises before anything is written."""
    codec_id, body = codec.encode(value, key)
    if codec_id & SEALED:
        head = _PREFIXES[codec_id] + stamp.to_bytes(8, "big")
        payload = head + cast(Sealer, codec).seal(head, body, key)
    else:
        payload = b"".join((_PREFIXES[codec_id], stamp.to_bytes(8, "big"), body))
    if len(payload) > max_bytes:
        raise ValueTooLargeError(
            f"value for {key!r} encodes to {len(payload)} bytes, over max_value_bytes={max_bytes}"
        )
    return payload


def not_ours() -> CorruptPayload:
    """What ``unpack`` raises for a string without our header (a miss, left alone)."""
    return CorruptPayload("a string without the cache_service header", foreign=True)


def unpack(codec: Codec, raw: bytes, key: str) -> Any:
    """Decode a payload written by ``pack``; raises CorruptPayload for anything else."""
    if raw[:2] != MAGIC or len(raw) < HEADER_SIZE:  # (inline: a frame costs ~1% of a hit)
        raise not_ours()
    codec_id = raw[2]
    if codec_id & SEALED and codec_id < STAGE_BITS:
        unseal = getattr(codec, "unseal", None)
        if unseal is None:
            raise CorruptPayload("an encrypted payload: this service has no encryption keys",
                                 remove=False)
        return unseal(raw, key)
    # A bytes slice, not a memoryview: orjson parses bytes faster, which outweighs the copy.
    return codec.decode(codec_id, raw[HEADER_SIZE:], key)
