"""What a stored value is, for ``keys`` and ``get`` (pure: bytes in, a description out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cache_service._ops.tags import TAGGED, is_tagged, open_tagged
from cache_service.codec import (
    HEADER_SIZE,
    MAGIC,
    SEALED,
    SERIALIZER_BITS,
    SIGNED_PICKLE,
    CorruptPayload,
    JsonCodec,
    codec_name,
    stamp_of,
    unpack,
)
from cache_service.codecs import PipelineCodec

__all__ = ["Payload", "describe_header", "describe_payload"]

# Reads every unencrypted JSON or msgpack payload whose compression library is installed.
_READER = PipelineCodec(JsonCodec(), max_bytes=1 << 30)


@dataclass
class Payload:
    """``kind``: ours, foreign (no header of ours) or corrupt (our header, unreadable)."""

    kind: str
    codec: str = "-"
    writer: str = "-"  # the writer's process id (hex) and its write sequence number
    tags: tuple[str, ...] = ()
    value: Any = None
    decoded: bool = False
    problem: str = ""


def describe_header(head: bytes) -> Payload:
    """From the first 11 bytes (or fewer) of a string value."""
    if head[:2] != MAGIC or len(head) < HEADER_SIZE:
        return Payload("foreign", problem="no cache_service header")
    codec_id = head[2] & ~TAGGED & 0xFF
    name = codec_name(codec_id)
    if name is None:
        return Payload("corrupt", problem=f"unknown codec id {head[2]}")
    stamp = stamp_of(head)
    tagged = " +tags" if head[2] & TAGGED else ""
    return Payload("ours", name + tagged, f"{stamp >> 40:06x}#{stamp & 0xFF_FFFF_FFFF}")


def describe_payload(key: str, raw: bytes) -> Payload:
    """The header, and the value decoded when the CLI can do so safely (JSON codecs; a
    signed pickle is never unpickled: that needs the signing key and runs code)."""
    found = describe_header(raw[:HEADER_SIZE])
    if found.kind != "ours":
        return found
    plain = raw
    if is_tagged(raw):
        tagged = open_tagged(key, raw)
        if tagged is None:
            return Payload("corrupt", found.codec, found.writer, problem="malformed tag section")
        found.tags = tuple(tagged.tags)
        plain = tagged.plain
    if plain[2] & SERIALIZER_BITS == SIGNED_PICKLE:
        found.problem = "signed pickle: not decoded (needs the signing key; unpickling runs code)"
        return found
    if plain[2] & SEALED:
        found.problem = "encrypted: not decoded (needs the encryption keys)"
        return found
    try:
        found.value = unpack(_READER, plain, key)
    except CorruptPayload as exc:
        return Payload("corrupt", found.codec, found.writer, found.tags, problem=str(exc))
    found.decoded = True
    return found
