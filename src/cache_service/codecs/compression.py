"""Compressors: each one compresses a body and decompresses one within a bound (a body that
would grow past ``limit`` bytes is a decompression bomb: CorruptPayload, a miss)."""

from __future__ import annotations

import threading
import zlib
from typing import Any, Protocol

from cache_service.codec import Buffer, CorruptPayload
from cache_service.codecs._extras import available, require

__all__ = ["COMPRESSORS", "Compressor", "compressor", "decompressor"]


class Compressor(Protocol):
    """One compression library: ``ident`` is its 2-bit id in the codec byte."""

    ident: int
    name: str

    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: Buffer, limit: int) -> bytes: ...


def _bomb(limit: int) -> CorruptPayload:
    return CorruptPayload(f"compressed payload inflates past max_value_bytes={limit}")


class Zlib:
    """zlib (standard library), level 6 by default."""

    ident, name = 1, "zlib"

    def __init__(self, level: int | None = None) -> None:
        self.level = 6 if level is None else level
        zlib.compress(b"", self.level)  # a bad level raises here, at construction

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decompress(self, data: Buffer, limit: int) -> bytes:
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, limit + 1)
        except Exception as exc:  # anyone who can write to Redis chooses these bytes
            raise CorruptPayload(f"undecodable zlib body ({exc})") from None
        if len(out) > limit or d.unconsumed_tail:
            raise _bomb(limit)
        if not d.eof:
            raise CorruptPayload("truncated zlib body")
        return out


class Zstd:
    """Zstandard (``zstandard``), level 3 by default; frames carry their content size."""

    ident, name = 2, "zstd"

    def __init__(self, level: int | None = None) -> None:
        self._zstd: Any = require("zstandard", "compression='zstd'")
        self.level = 3 if level is None else level
        self._local = threading.local()  # contexts are not safe to share between threads
        self._compressor()
        self._decompressor()

    def _compressor(self) -> Any:
        try:
            return self._local.compressor
        except AttributeError:
            made = self._local.compressor = self._zstd.ZstdCompressor(level=self.level)
            return made

    def _decompressor(self) -> Any:
        made = self._local.decompressor = self._zstd.ZstdDecompressor()
        return made

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._compressor().compress(data)
        return out

    def decompress(self, data: Buffer, limit: int) -> bytes:
        try:
            size = self._zstd.frame_content_size(data)
        except Exception as exc:  # anyone who can write to Redis chooses these bytes
            raise CorruptPayload(f"undecodable zstd body ({exc})") from None
        if size < 0:
            raise CorruptPayload("zstd body without its content size")
        if size > limit:
            raise _bomb(limit)
        try:  # this thread's decompressor, made on its first read
            d = self._local.decompressor
        except AttributeError:
            d = self._decompressor()
        try:
            out: bytes = d.decompress(data, max_output_size=limit)
        except Exception as exc:  # anyone who can write to Redis chooses these bytes
            raise CorruptPayload(f"undecodable zstd body ({exc})") from None
        if len(out) != size:
            raise CorruptPayload("zstd body does not match its content size")
        return out


class Lz4:
    """LZ4 frames (``lz4``), default level; fast more than small."""

    ident, name = 3, "lz4"

    def __init__(self, level: int | None = None) -> None:
        self._frame: Any = require("lz4.frame", "compression='lz4'")
        self.level = 0 if level is None else level

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._frame.compress(data, compression_level=self.level, store_size=True)
        return out

    def decompress(self, data: Buffer, limit: int) -> bytes:
        d = self._frame.LZ4FrameDecompressor()
        try:
            out: bytes = d.decompress(data, max_length=limit + 1)
        except Exception as exc:  # anyone who can write to Redis chooses these bytes
            raise CorruptPayload(f"undecodable lz4 body ({exc})") from None
        if len(out) > limit:
            raise _bomb(limit)
        if not d.eof:
            raise CorruptPayload("truncated lz4 body")
        return out


COMPRESSORS: dict[str, type[Zlib] | type[Zstd] | type[Lz4]] = {
    "zstd": Zstd, "lz4": Lz4, "zlib": Zlib}
_BY_ID = {c.ident: c for c in COMPRESSORS.values()}
_MODULES = {1: None, 2: "zstandard", 3: "lz4.frame"}
_readers: dict[int, Compressor] = {}


def compressor(name: str, level: int | None) -> Compressor:
    """The compressor called ``name`` (a key of COMPRESSORS) at ``level``."""
    return COMPRESSORS[name](level)


def decompressor(ident: int) -> Compressor | None:
    """A compressor that reads bodies of ``ident``, or None if its package is missing (any
    service opens any compressed value whose library is installed)."""
    found = _readers.get(ident)
    if found is None:
        module = _MODULES[ident]
        if module is not None and available(module) is None:
            return None
        found = _readers[ident] = _BY_ID[ident](None)
    return found
