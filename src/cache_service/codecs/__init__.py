"""Values as stored: the codec pipeline of serializer (JSON, msgpack, signed pickle),
compression (zstd, lz4, zlib) and AES-256-GCM, and the service options that build it.

``CacheService("api", serializer="msgpack", compression="zstd", encryption_keys=[new, old])``
builds a ``PipelineCodec``; each stage is recorded in the payload's codec byte, so every
service reads what any other wrote (today's JSON and pickle payloads included).
"""

from __future__ import annotations

from cache_service.codecs.compression import COMPRESSORS, Compressor
from cache_service.codecs.encryption import Keyring, parse_keys
from cache_service.codecs.msgpack_types import MsgpackSerializer
from cache_service.codecs.options import (
    COMPRESSION_NAMES,
    OPTION_ALIASES,
    SERIALIZER_NAMES,
    build_codec,
    serializer_name,
)
from cache_service.codecs.pipeline import PipelineCodec, Serializer

__all__ = ["COMPRESSION_NAMES", "COMPRESSORS", "OPTION_ALIASES", "SERIALIZER_NAMES", "Compressor",
           "Keyring", "MsgpackSerializer", "PipelineCodec", "Serializer", "build_codec",
           "parse_keys", "serializer_name"]
