"""Litestar ``Store`` on AsyncCacheService (extras ``litestar``): the response cache, rate
limiting and server-side sessions keep working through a Redis outage (on the memory fallback).

::

    from litestar import Litestar
    from litestar.stores.registry import StoreRegistry
    from cache_service.integrations.litestar import CacheServiceStore

    root = CacheServiceStore.with_url("redis://127.0.0.1:6379/0")
    app = Litestar(route_handlers=[...],
                   stores=StoreRegistry(default_factory=root.with_namespace))

Every call awaits the async service (no thread hop, no sync call). ``with_namespace`` nests:
a store's keys are ``<namespace path>:<key>`` in the service's prefix, and ``delete_all``
removes its namespace and every child namespace (the root store: the whole service prefix,
never another app's keys). ``expires_in=None`` (or 0) keeps a value with no expiry (100
years); ``expires_in(key)`` is then ``None``, as Litestar's protocol says. Keys over 1,024
characters (or not UTF-8 encodable) are stored under a SHA-256 digest. Values are kept as
Latin-1 text (one character per byte): with the default codec a plain JSON string, ~8x cheaper
to encode and decode than the base64 form JSON needs for bytes when the payload is mostly text
(as Litestar's JSON, msgpack-framed responses and sessions are). A value over the
service's ``max_value_bytes`` is not stored (the key is removed, a warning is logged).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from types import TracebackType
from typing import Any

from litestar.stores.base import NamespacedStore

from cache_service.aio import AsyncCacheService
from cache_service.errors import ConfigurationError, ValueTooLargeError
from cache_service.integrations._common import FOREVER
from cache_service.keys import encodable
from cache_service.redis_glob import escape_glob

__all__ = ["CacheServiceStore"]

log = logging.getLogger("cache_service.integrations.litestar")
MAX_PLAIN_KEY = 1024
"""Longer keys (a response cache key holds the query string) are stored as a digest."""
_NOT_IN_NAMESPACES = frozenset(":/#")


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class CacheServiceStore(NamespacedStore):
    """A Litestar ``NamespacedStore`` whose values live in an ``AsyncCacheService``."""

    __slots__ = ("_head", "_owns", "_service")

    def __init__(self, service: AsyncCacheService, namespace: str | None = None, *,
                 owns_service: bool = False) -> None:
        """``namespace``: segments joined by "/" (none: the root of the service's prefix);
        ``owns_service``: ``aclose()`` the service when Litestar shuts the store down."""
        if not isinstance(service, AsyncCacheService):
            raise ConfigurationError(f"CacheServiceStore needs an AsyncCacheService, got "
                                     f"{type(service).__name__}")
        if namespace is not None:
            for segment in namespace.split("/"):
                _check_segment(segment)
        self._service = service
        self.namespace: str | None = namespace
        self._head = namespace or ""
        self._owns = owns_service

    @classmethod
    def with_url(cls, url: str, prefix: str = "litestar", namespace: str | None = None,
                 **options: Any) -> CacheServiceStore:
        """A root store on a service of its own (``AsyncCacheService(prefix, url=url,
        **options)``), closed when Litestar shuts it down."""
        return cls(AsyncCacheService(prefix, url=url, **options), namespace, owns_service=True)

    @property
    def service(self) -> AsyncCacheService:
        """The service holding this store's values."""
        return self._service

    def with_namespace(self, namespace: str) -> CacheServiceStore:
        """A store for the child ``namespace``; ``delete_all`` here also clears it."""
        _check_segment(namespace)
        path = f"{self._head}/{namespace}" if self._head else namespace
        return type(self)(self._service, path)

    def _key(self, key: str) -> str:
        if len(key) <= MAX_PLAIN_KEY and encodable(key):
            return f"{self._head}:{key}"
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self._head}#{digest}"  # "#": never the form of a plain key

    async def set(self, key: str, value: str | bytes,
                  expires_in: int | timedelta | None = None) -> None:
        """Store ``value`` (text as UTF-8) for ``expires_in`` seconds (None or 0: no expiry)."""
        data = value.encode() if isinstance(value, str) else bytes(value)
        ttl = _seconds(expires_in) if expires_in else FOREVER
        made = self._key(key)
        try:
            await self._service.set(made, data.decode("latin-1"), ttl)
        except ValueTooLargeError as exc:  # not cached, as the other framework backends
            await self._service.delete(made)
            log.warning("not cached: %s (raise the max_value_bytes option to cache it)", exc)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        """The value, or None; ``renew_for`` gives a value that expires a new expiry."""
        made = self._key(key)
        found = await self._service.get(made)
        if type(found) is str:
            try:
                value = found.encode("latin-1")
            except UnicodeEncodeError:  # text some other writer put there
                return None
        elif type(found) is bytes:  # written as bytes by another service
            value = found
        else:  # a miss, or a value no store of ours wrote
            return None
        if renew_for:
            left = await self._service.ttl(made)
            if left is not None and left < FOREVER / 2:
                await self._service.touch(made, _seconds(renew_for))
        return value

    async def delete(self, key: str) -> None:
        await self._service.delete(self._key(key))

    async def delete_all(self) -> None:
        """Remove this namespace's values and its child namespaces' (the root: all)."""
        if self._head:
            await self._service.invalidate_pattern(escape_glob(self._head) + "[:/#]*")
        else:
            await self._service.clear_all()

    async def exists(self, key: str) -> bool:
        return await self._service.exists(self._key(key))

    async def expires_in(self, key: str) -> int | None:
        """Whole seconds ``key`` has left (rounded as Redis' TTL); None if absent or kept
        with no expiry."""
        left = await self._service.ttl(self._key(key))
        if left is None or left >= FOREVER / 2:
            return None
        return int(left + 0.5)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc_val: BaseException | None, exc_tb: TracebackType | None) -> None:
        if self._owns:
            await self._service.aclose()


def _check_segment(segment: object) -> None:
    if not isinstance(segment, str) or not segment or len(segment) > 200 \
            or _NOT_IN_NAMESPACES & set(segment) or not encodable(segment):
        raise ConfigurationError(
            f"a store namespace must be 1-200 characters without ':', '/' or '#', got "
            f"{segment!r}")
