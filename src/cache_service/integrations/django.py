"""Django cache backend on CacheService / AsyncCacheService (extra ``django``).

::

    CACHES = {
        "default": {
            "BACKEND": "cache_service.integrations.django.DjangoCache",
            "LOCATION": "redis://127.0.0.1:6379/0",      # any URL we accept, memory:// too
            "TIMEOUT": 300,                               # None: forever, 0: don't cache
            "KEY_PREFIX": "shop",
            "OPTIONS": {"socket_timeout": 0.25, "max_memory_entries": 20_000},
        }
    }

Values are pickled and signed with HMAC-SHA256 (``PickleCodec``; values JSON round-trips
exactly are stored as JSON). The key is ``OPTIONS["SIGNING_KEY"]`` or, by default, derived from
``SECRET_KEY``; every process sharing the cache needs the same one. ``OPTIONS`` take the
service's constructor options (any case) plus ``SIGNING_KEY`` and ``PREFIX`` (the service
namespace; default ``django`` plus ``KEY_PREFIX``). ``clear()`` removes the keys of that
namespace only (never FLUSHDB). The ``a*`` methods are native, on ``AsyncCacheService``.

Redis failing never reaches a view: calls go to the bounded memory fallback at once, as for
every service (see the README, "When Redis fails").
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, memcache_key_warnings
from django.core.exceptions import ImproperlyConfigured

from cache_service.errors import ConfigurationError, SerializationError

from ._common import FOREVER, build_services, derive_key, service_prefix

__all__ = ["DjangoCache", "DjangoConfigurationError"]

_MADE_KEYS = 4096  # made keys remembered per cache (the dict is emptied when full)


class DjangoConfigurationError(ConfigurationError, ImproperlyConfigured):  # type: ignore[misc]
    """A bad ``CACHES`` entry: both our ConfigurationError and Django's ImproperlyConfigured."""


def _location(server: object) -> object:
    if isinstance(server, (list, tuple)):
        if len(server) != 1:
            raise DjangoConfigurationError(
                f"CACHES LOCATION: one Redis URL is expected, got {len(server)} "
                f"(Sentinel and Cluster take their nodes in one URL)")
        return server[0]
    return server


class DjangoCache(BaseCache):  # type: ignore[misc]
    """``django.core.cache.backends.base.BaseCache`` over a CacheService."""

    def __init__(self, server: object, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        options = dict(params.get("OPTIONS") or {})
        signing_key = options.pop("SIGNING_KEY", options.pop("signing_key", None))
        prefix = options.pop("PREFIX", options.pop("prefix", None))
        try:
            secret = settings.SECRET_KEY
        except (ImproperlyConfigured, AttributeError):  # "must not be empty"
            secret = None
        if signing_key is None and secret:
            signing_key = derive_key(secret, "django-cache")
        if prefix is None:
            prefix = service_prefix("django", self.key_prefix)
        self._made: dict[tuple[Any, int | None], str] = {}
        self._service, self._aservice = build_services(
            "CACHES OPTIONS" if options else "CACHES LOCATION", _location(server),
            prefix, options, signing_key=signing_key,
            key_help="set SECRET_KEY or OPTIONS['SIGNING_KEY'] (16+ bytes)",
            error=DjangoConfigurationError)

    @property
    def service(self) -> Any:
        """The CacheService under this cache (stats(), is_redis_available(), ...)."""
        return self._service

    # -- Django's semantics, written once for both method families ----------------------------
    def _ttl(self, timeout: Any) -> float | None:
        """Seconds to keep a value, or None: do not keep it (Django's 0 and negatives)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return FOREVER
        return float(timeout) if timeout > 0 else None

    def _key(self, key: Any, version: int | None) -> str:
        """``make_and_validate_key``, remembered for keys Django has no warning for (a
        CacheKeyWarning must come on every use); making and checking costs ~3 µs a call."""
        try:
            return self._made[key, version]
        except KeyError:
            pass
        except TypeError:  # an unhashable key object: Django formats it with str()
            return self._make(key, version)
        made = self._make(key, version)
        if next(memcache_key_warnings(made), None) is None:
            if len(self._made) >= _MADE_KEYS:
                self._made.clear()
            self._made[key, version] = made
        return made

    def _make(self, key: Any, version: int | None) -> str:
        made: str = self.make_and_validate_key(key, version=version)
        return made

    def _keys(self, keys: Iterable[Any], version: int | None) -> dict[str, Any]:
        return {self._key(k, version): k for k in keys}

    @staticmethod
    def _unpicklable(value: Any, exc: SerializationError) -> None:
        """Raise pickle's own error for a value pickle refuses, as Django's backends do."""
        pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        raise exc

    @staticmethod
    def _missing(key: Any) -> ValueError:
        return ValueError(f"Key '{key}' not found.")

    # -- blocking API -------------------------------------------------------------------------
    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
            version: int | None = None) -> bool:
        k, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:
            return not self._service.exists(k)
        try:
            return self._service.add(k, value, ttl)
        except SerializationError as exc:
            self._unpicklable(value, exc)
            raise

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._service.get(self._key(key, version), default)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
            version: int | None = None) -> None:
        k, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:
            self._service.delete(k)
            return
        try:
            self._service.set(k, value, ttl)
        except SerializationError as exc:
            self._unpicklable(value, exc)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        k, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:
            return self._service.delete(k) > 0
        return self._service.touch(k, ttl)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._service.delete(self._key(key, version)) > 0

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = self._keys(keys, version)
        return {made[k]: v for k, v in self._service.get_many(list(made)).items()}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._service.exists(self._key(key, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        k = self._key(key, version)
        if not self._service.exists(k):
            raise self._missing(key)
        return self._service.incr(k, delta)

    def set_many(self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT,
                 version: int | None = None) -> list[Any]:
        made = {self._key(k, version): v for k, v in data.items()}
        ttl = self._ttl(timeout)
        if not made:
            return []
        if ttl is None:
            self._service.delete(*made)
            return []
        try:
            self._service.set_many(made, ttl)
        except SerializationError as exc:
            for value in made.values():
                self._unpicklable(value, exc)
        return []

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        made = list(self._keys(keys, version))
        if made:
            self._service.delete(*made)

    def clear(self) -> None:
        """Remove this cache's keys (its namespace), nothing else."""
        self._service.clear_all()

    def close(self, **kwargs: Any) -> None:
        """Nothing to do per request: connections are pooled per process and target."""

    # -- native async API ---------------------------------------------------------------------
    async def aadd(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
                   version: int | None = None) -> bool:
        k, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:
            return not await self._aservice.exists(k)
        try:
            return await self._aservice.add(k, value, ttl)
        except SerializationError as exc:
            self._unpicklable(value, exc)
            raise

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return await self._aservice.get(self._key(key, version), default)

    async def aset(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
                   version: int | None = None) -> None:
        k, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:
            await self._aservice.delete(k)
            return
        try:
            await self._aservice.set(k, value, ttl)
        except SerializationError as exc:
            self._unpicklable(value, exc)

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT,
                     version: int | None = None) -> bool:
        k, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:
            return await self._aservice.delete(k) > 0
        return await self._aservice.touch(k, ttl)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return await self._aservice.delete(self._key(key, version)) > 0

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = self._keys(keys, version)
        return {made[k]: v for k, v in (await self._aservice.get_many(list(made))).items()}

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return await self._aservice.exists(self._key(key, version))

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        k = self._key(key, version)
        if not await self._aservice.exists(k):
            raise self._missing(key)
        return await self._aservice.incr(k, delta)

    async def aset_many(self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT,
                        version: int | None = None) -> list[Any]:
        made = {self._key(k, version): v for k, v in data.items()}
        ttl = self._ttl(timeout)
        if not made:
            return []
        if ttl is None:
            await self._aservice.delete(*made)
            return []
        try:
            await self._aservice.set_many(made, ttl)
        except SerializationError as exc:
            for value in made.values():
                self._unpicklable(value, exc)
        return []

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        made = list(self._keys(keys, version))
        if made:
            await self._aservice.delete(*made)

    async def aclear(self) -> None:
        await self._aservice.clear_all()

    async def aclose(self, **kwargs: Any) -> None:
        """Nothing to do per request (see ``close``)."""
