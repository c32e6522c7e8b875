"""Service options -> codec: ``serializer``, ``compression``, ``compress_min_bytes``,
``compression_level``, ``encryption_keys`` and ``encryption_keys_env``, with django-redis'
``SERIALIZER`` / ``COMPRESSOR`` class paths accepted where they map. No option set: the codec
given (or JsonCodec) as before, so the default hot path is unchanged."""

from __future__ import annotations

import os

from cache_service.codec import Codec, JsonCodec, PickleCodec
from cache_service.codecs._extras import require
from cache_service.codecs.compression import COMPRESSORS, compressor
from cache_service.codecs.encryption import Keyring, parse_keys
from cache_service.codecs.msgpack_types import MsgpackSerializer
from cache_service.codecs.pipeline import PipelineCodec, Serializer
from cache_service.errors import ConfigurationError

__all__ = ["COMPRESSION_NAMES", "OPTION_ALIASES", "SERIALIZER_NAMES", "build_codec",
           "serializer_name"]

SERIALIZER_NAMES = ("json", "msgpack", "pickle")
COMPRESSION_NAMES = (*COMPRESSORS, "none")
# django-redis' class paths (its SERIALIZER and COMPRESSOR options), by their last part
_DJANGO_REDIS = {
    "jsonserializer": "json", "msgpackserializer": "msgpack", "pickleserializer": "pickle",
    "zlibcompressor": "zlib", "zstdcompressor": "zstd", "lz4compressor": "lz4",
    "identitycompressor": "none",
}


# django-redis' OPTIONS names (lowercased) for ours, so a migration is a settings change
OPTION_ALIASES = {"compressor": "compression"}


def serializer_name(value: object, setting: str = "serializer") -> str:
    """``value`` as one of SERIALIZER_NAMES (django-redis' class paths mapped), else a
    ConfigurationError naming ``setting`` and what is allowed."""
    return _name(value, setting, SERIALIZER_NAMES)


def _name(value: object, setting: str, allowed: tuple[str, ...]) -> str:
    """``value`` as one of ``allowed`` (django-redis' class paths mapped), else an error
    naming them."""
    if isinstance(value, str):
        name = value.strip().lower()
        name = _DJANGO_REDIS.get(name.rpartition(".")[2], name)
        if name in allowed:
            return name
    raise ConfigurationError(f"{setting} must be one of {', '.join(allowed)} (or django-redis' "
                             f"matching class path), got {value!r}")


def _count(value: object, setting: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"{setting} must be an int >= {low}, got {value!r}")
    return value


def build_codec(codec: Codec | None, *, serializer: str | None, compression: str | None,
                compress_min_bytes: int, compression_level: int | None,
                encryption_keys: object, encryption_keys_env: str | None,
                max_bytes: int) -> Codec:
    """The service's codec: ``codec`` (default JsonCodec) alone when no stage is asked for,
    else a PipelineCodec; a bad or conflicting option raises ConfigurationError."""
    compress = None if compression is None else _name(compression, "compression",
                                                      COMPRESSION_NAMES)
    if compress == "none":
        compress = None
    _count(compress_min_bytes, "compress_min_bytes", 0)
    if compression_level is not None and (isinstance(compression_level, bool)
                                          or not isinstance(compression_level, int)):
        raise ConfigurationError(f"compression_level must be an int, got {compression_level!r}")
    keys = _keys(encryption_keys, encryption_keys_env)
    if serializer is None and compress is None and keys is None:
        return codec if codec is not None else JsonCodec()
    stage1 = _serializer(codec, serializer)
    try:
        squeeze = None if compress is None else compressor(compress, compression_level)
    except ConfigurationError:
        raise
    except Exception as exc:  # zlib, zstd or lz4 refusing the level (each its own error)
        raise ConfigurationError(f"compression_level={compression_level!r} is refused by "
                                 f"{compress}: {exc}") from None
    return PipelineCodec(stage1, compressor=squeeze, compress_min_bytes=compress_min_bytes,
                         keyring=None if keys is None else Keyring(keys), max_bytes=max_bytes)


def _serializer(codec: Codec | None, serializer: str | None) -> Serializer:
    name = None if serializer is None else _name(serializer, "serializer", SERIALIZER_NAMES)
    if codec is not None:
        if not isinstance(codec, JsonCodec):
            raise ConfigurationError(
                "compression and encryption_keys work with codec=JsonCodec() or PickleCodec(...)"
                f" or serializer=..., not with codec={codec!r}")
        given = "pickle" if isinstance(codec, PickleCodec) else "json"
        if name is not None and name != given:
            raise ConfigurationError(f"serializer={serializer!r} conflicts with codec={codec!r}"
                                     "; give one of them")
        return codec
    if name == "msgpack":
        return MsgpackSerializer(require("msgpack", "serializer='msgpack'"))
    if name == "pickle":
        raise ConfigurationError("serializer='pickle' takes its signing key from codec="
                                 "PickleCodec(signing_key=...); pass that instead")
    return JsonCodec()


def _keys(encryption_keys: object, env: str | None) -> list[bytes] | None:
    if env is not None:
        if encryption_keys is not None:
            raise ConfigurationError("give encryption_keys or encryption_keys_env, not both")
        if not isinstance(env, str) or not env:
            raise ConfigurationError(f"encryption_keys_env must name an environment variable, "
                                     f"got {env!r}")
        text = os.environ.get(env)
        if not text:
            raise ConfigurationError(f"encryption_keys_env: ${env} is not set (it holds the "
                                     "encryption keys, the writing one first)")
        return parse_keys(text, f"${env}")
    if encryption_keys is None:
        return None
    return parse_keys(encryption_keys)
