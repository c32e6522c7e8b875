"""The codec pipeline: serializer -> compression (above a threshold, kept only when it saves
space) -> AES-256-GCM, each stage recorded in the codec byte so that any reader opens any
value (mixed writers, a change of settings, today's JSON and pickle payloads)."""

from __future__ import annotations

from typing import Any, Protocol, cast

from orjson import loads

from cache_service.codec import (
    COMPRESSION_SHIFT,
    HEADER_SIZE,
    MAGIC,
    MSGPACK,
    PLAIN_JSON,
    SEALED,
    SERIALIZER_BITS,
    SIGNED_PICKLE,
    STAGE_BITS,
    STAGE_OPENS,
    STAGE_READER,
    TAGGED_JSON,
    VIEW_FROM,
    Buffer,
    CorruptPayload,
    JsonCodec,
    PickleCodec,
    known_codec_id,
    not_ours,
)
from cache_service.codecs._extras import available
from cache_service.codecs.compression import Compressor, decompressor
from cache_service.codecs.encryption import Keyring
from cache_service.codecs.msgpack_types import MsgpackSerializer
from cache_service.errors import ValueTooLargeError
from cache_service.stats import value

__all__ = ["STAGE_READ_LIMIT", "PipelineCodec", "Serializer"]

_COUNTER = 2**53 - 1  # incr's bound (``_ops.incr.MAX_COUNTER``)
# Codec ids whose body ``open_payload`` hands on as a memoryview (from VIEW_FROM bytes): every
# stage that reads them (a decompressor, msgpack) takes a buffer; orjson and pickle read bytes.
_IN_PLACE = frozenset(i for i in range(STAGE_BITS) if known_codec_id(i) and not i & SEALED
                      and (i >> COMPRESSION_SHIFT & 3 or i & SERIALIZER_BITS == MSGPACK))

class Serializer(Protocol):
    """The first stage: a value to ``(serializer id, bytes)`` and back."""

    def encode(self, value: Any, key: str) -> tuple[int, bytes]: ...

    def decode(self, codec_id: int, body: bytes, key: str) -> Any: ...


_msgpack_reader: list[MsgpackSerializer | None] = []


def _msgpack() -> MsgpackSerializer | None:
    """A reader of msgpack bodies if msgpack is installed (built once)."""
    if not _msgpack_reader:
        module = available("msgpack")
        _msgpack_reader.append(None if module is None else MsgpackSerializer(module))
    return _msgpack_reader[0]


class PipelineCodec:
    """A ``Codec`` of stages; ``max_bytes`` bounds a serialized body (before compression)
    and so what a compressed one may inflate to."""

    def __init__(self, serializer: Serializer, *, compressor: Compressor | None = None,
                 compress_min_bytes: int = 1024, keyring: Keyring | None = None,
                 max_bytes: int = 1024 * 1024) -> None:
        self.serializer = serializer
        self.compressor = compressor
        self.compress_min_bytes = compress_min_bytes
        self.keyring = keyring
        self.max_bytes = max_bytes
        self._json = serializer if isinstance(serializer, JsonCodec) else JsonCodec()
        self._pickle = serializer if isinstance(serializer, PickleCodec) else None
        self._sealed = SEALED if keyring is not None else 0
        self._msgpack = serializer if isinstance(serializer, MsgpackSerializer) else None

    def __repr__(self) -> str:
        stages = [type(self.serializer).__name__]
        if self.compressor is not None:
            stages.append(f"{self.compressor.name}>={self.compress_min_bytes}B")
        if self.keyring is not None:
            stages.append("aes-256-gcm")
        return f"PipelineCodec({' -> '.join(stages)})"

    def encode(self, value: Any, key: str) -> tuple[int, bytes]:
        """Serialize, compress when large enough and smaller, and flag encryption (``pack``
        seals the body with the header it builds). An int that fits a counter stays plain
        JSON whatever the stages: ``incr``/``decr`` read and write counters as such in Lua."""
        if type(value) is int and -_COUNTER <= value <= _COUNTER:
            return PLAIN_JSON, str(value).encode()
        codec_id, body = self.serializer.encode(value, key)
        if len(body) > self.max_bytes:
            raise ValueTooLargeError(f"value for {key!r} serializes to {len(body)} bytes, "
                                     f"over max_value_bytes={self.max_bytes}")
        c = self.compressor
        if c is not None and len(body) >= self.compress_min_bytes:
            packed = c.compress(body)
            if len(packed) < len(body):
                body = packed
                codec_id |= c.ident << COMPRESSION_SHIFT
        return codec_id | self._sealed, body

    def seal(self, head: bytes, body: bytes, key: str) -> bytes:
        """Encrypt ``body`` with ``head`` (the payload's 11 header bytes) bound in."""
        assert self.keyring is not None  # only ids with SEALED, which only a keyring sets
        return self.keyring.seal(head, body, key)

    def unseal(self, raw: bytes, key: str) -> Any:
        """Decrypt a whole sealed payload, then open its inner stages."""
        if self.keyring is None:
            raise CorruptPayload("an encrypted payload: this service has no encryption keys",
                                 remove=False)
        return self.decode(raw[2] & ~SEALED, self.keyring.open(raw, key), key)

    def open_payload(self, raw: bytes, key: str) -> Any:
        """``unpack``'s work for this codec with fewer steps (the get paths call it): a
        compressed, msgpack or sealed body of VIEW_FROM bytes or more is read in place."""
        if raw[:2] != MAGIC or len(raw) < HEADER_SIZE:
            raise not_ours()
        codec_id = raw[2]
        if codec_id in _IN_PLACE and len(raw) >= VIEW_FROM:
            return self.decode(codec_id, memoryview(raw)[HEADER_SIZE:], key)
        if codec_id & SEALED and codec_id < STAGE_BITS:
            return self.unseal(raw, key)
        return self.decode(codec_id, raw[HEADER_SIZE:], key)

    def decode(self, codec_id: int, body: Buffer, key: str) -> Any:
        """Decompress (bounded by ``max_bytes``) and deserialize an unsealed body (a
        memoryview only for the ids of ``_IN_PLACE``: JSON and pickle are handed bytes)."""
        if codec_id == MSGPACK and self._msgpack is not None:  # the one step of msgpack
            return self._msgpack.decode(codec_id, body, key)
        if codec_id >= STAGE_BITS or codec_id & SEALED:  # tagged, or no layout of ours
            return self._json.decode(codec_id, bytes(body), key)  # raises CorruptPayload
        ident = codec_id >> COMPRESSION_SHIFT & 3
        if ident:
            reader = decompressor(ident)
            if reader is None:
                raise CorruptPayload(f"payload codec {codec_id}: its compression library is "
                                     "not installed here", remove=False)
            body = reader.decompress(body, self.max_bytes)
        sid = codec_id & SERIALIZER_BITS
        if sid == PLAIN_JSON:  # JsonCodec.decode's first case, a frame less
            try:
                return loads(body)
            except Exception as exc:  # anyone who can write to Redis chooses these bytes
                raise CorruptPayload(f"undecodable JSON payload ({type(exc).__name__})") \
                    from None
        if sid == TAGGED_JSON:  # bytes: only msgpack ids are read in place uncompressed
            return self._json.decode(sid, cast(bytes, body), key)
        if sid == SIGNED_PICKLE and self._pickle is not None:
            return self._pickle.decode(sid, cast(bytes, body), key)
        if sid == MSGPACK:
            reader_ = self._msgpack or _msgpack()
            if reader_ is not None:
                return reader_.decode(sid, body, key)
        raise CorruptPayload(f"payload codec {codec_id} needs a codec this service lacks",
                             remove=not known_codec_id(codec_id))

    def opens(self, codec_id: int) -> bool:
        """Whether this codec decodes payloads of ``codec_id`` (with what is installed)."""
        if not known_codec_id(codec_id):
            return False
        if codec_id & SEALED and self.keyring is None:
            return False
        ident = codec_id >> COMPRESSION_SHIFT & 3
        if ident and decompressor(ident) is None:
            return False
        sid = codec_id & SERIALIZER_BITS
        if sid == SIGNED_PICKLE:
            return self._pickle is not None
        if sid == MSGPACK:
            return self._msgpack is not None or _msgpack() is not None
        return True

    def stats(self) -> dict[str, int]:
        """What the encryption stage refused (empty without one)."""
        if self.keyring is None:
            return {}
        return {"auth_failures": value(self.keyring.auth_failures),
                "unknown_keys": value(self.keyring.unknown_keys)}


# A JsonCodec or PickleCodec with no stages of its own (a service without codec options)
# still opens compressed and msgpack payloads that another service wrote; it does not know
# its service's max_value_bytes, so what they inflate to is bounded by this.
STAGE_READ_LIMIT = 16 * 1024 * 1024


def _read_stages(codec: Any, codec_id: int, body: bytes, key: str) -> Any:
    return PipelineCodec(codec, max_bytes=STAGE_READ_LIMIT).decode(codec_id, body, key)


def _opens_stages(codec: Any, codec_id: int) -> bool:
    return PipelineCodec(codec, max_bytes=STAGE_READ_LIMIT).opens(codec_id)


if not STAGE_READER:
    STAGE_READER.append(_read_stages)
    STAGE_OPENS.append(_opens_stages)
