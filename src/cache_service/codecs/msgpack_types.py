"""msgpack with the exact types of the JSON codec: what msgpack would change (tuple, set,
frozenset, datetime/date/time/timedelta, UUID, Decimal, Ellipsis, ints beyond 64 bits) travels
as an ext type, so a value comes back of the type it went in as. One exception: msgpack packs
a bytearray as binary itself (no hook sees it), so it comes back as bytes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from types import ModuleType
from typing import Any

from cache_service.codec import ALLOWED_TYPES, MSGPACK, Buffer, CorruptPayload
from cache_service.errors import SerializationError

__all__ = ["MsgpackSerializer"]


class MsgpackSerializer:
    """Exact-type msgpack (codec id 4); ``module`` is the imported ``msgpack``."""

    def __init__(self, module: ModuleType) -> None:
        self._msgpack = module
        ext = module.ExtType
        pack = self._pack

        def items(v: Any) -> bytes:
            return pack(list(v))

        encoders: dict[type, tuple[int, Callable[[Any], bytes]]] = {
            tuple: (1, items),
            set: (2, items),
            frozenset: (3, items),
            datetime: (5, lambda v: v.isoformat().encode()),
            date: (6, lambda v: v.isoformat().encode()),
            time: (7, lambda v: v.isoformat().encode()),
            timedelta: (8, lambda v: pack([v.days, v.seconds, v.microseconds])),
            uuid.UUID: (9, lambda v: v.bytes),
            Decimal: (10, lambda v: str(v).encode()),
            type(Ellipsis): (11, lambda v: b""),
            int: (12, lambda v: str(v).encode()),  # beyond msgpack's 64 bits
        }

        def default(value: Any) -> Any:
            found = encoders.get(type(value))
            if found is None:
                t = type(value)
                raise SerializationError(
                    f"cannot cache a value of type {t.__module__}.{t.__qualname__}: the msgpack "
                    f"serializer stores {ALLOWED_TYPES}")
            code, encode = found
            return ext(code, encode(value))

        unpack = self._unpack
        decoders: dict[int, Callable[[bytes], Any]] = {
            1: lambda b: tuple(unpack(b)),
            2: lambda b: set(unpack(b)),
            3: lambda b: frozenset(unpack(b)),
            5: lambda b: datetime.fromisoformat(b.decode()),
            6: lambda b: date.fromisoformat(b.decode()),
            7: lambda b: time.fromisoformat(b.decode()),
            8: lambda b: timedelta(*unpack(b)),
            9: lambda b: uuid.UUID(bytes=b),
            10: lambda b: Decimal(b.decode()),
            11: lambda b: ...,
            12: lambda b: int(b.decode()),
        }

        def ext_hook(code: int, data: bytes) -> Any:
            return decoders[code](data)

        self._default = default
        self._ext_hook = ext_hook
        self._unpackb = module.unpackb

    def _pack(self, value: Any) -> bytes:
        packed: bytes = self._msgpack.packb(value, default=self._default, strict_types=True,
                                            use_bin_type=True)
        return packed

    def _unpack(self, body: Buffer) -> Any:
        return self._unpackb(body, ext_hook=self._ext_hook, strict_map_key=False)

    def encode(self, value: Any, key: str) -> tuple[int, bytes]:
        """``(4, msgpack bytes)``; SerializationError for a type it cannot store exactly."""
        try:
            return MSGPACK, self._pack(value)
        except SerializationError:
            raise
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise SerializationError(f"cannot cache this value: {exc}") from None

    def decode(self, codec_id: int, body: Buffer, key: str) -> Any:
        """The value of a msgpack body (bytes or a memoryview of them); anything that does
        not decode is CorruptPayload."""
        try:  # unpack's call inline, with msgpack >= 1.0's defaults (raw=False, use_list)
            return self._unpackb(body, ext_hook=self._ext_hook, strict_map_key=False)
        except Exception as exc:  # anyone who can write to Redis chooses these bytes
            raise CorruptPayload(f"undecodable msgpack payload ({type(exc).__name__})") from None
