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
exactly are stored as JSON). The key is ``OPTIONS["SIGNING_KEY"]`` (16+ bytes) or, by default,
derived from ``SECRET_KEY`` (32+ characters; a shorter one is a startup error); every process
sharing the cache needs the same one. ``OPTIONS`` take the
service's constructor options (any case) plus ``SIGNING_KEY`` and ``PREFIX`` (the service
namespace; default ``django`` plus ``KEY_PREFIX``), e.g. ``"compression": "zstd"``,
``"encryption_keys": [...]``; django-redis' ``SERIALIZER`` (pickle, json, msgpack; json and
msgpack need no signing key but store only their exact types) and ``COMPRESSOR`` (zlib, zstd,
lz4, identity) class paths are accepted, as are its other OPTIONS where they map
(``django_redis_compat``: the rest are refused, naming what to use instead). django-redis'
extra API (``delete_pattern``, ``keys``, ``ttl``, ``lock``...) works as it does there.
``clear()`` removes the keys of that namespace only (never FLUSHDB). The ``a*`` methods are
native, on ``AsyncCacheService``.

Redis failing never reaches a view: calls go to the bounded memory fallback at once, as for
every service (see the docs, "What happens when Redis fails").
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    BaseCache,
    InvalidCacheKey,
    memcache_key_warnings,
)
from django.core.exceptions import ImproperlyConfigured

from cache_service.errors import ConfigurationError
from cache_service.integrations._common import FOREVER, SigningKeys, build_services, service_prefix
from cache_service.integrations._django_plan import (
    CLEAR,
    NOTHING,
    NOTHING_FAILED,
    Plan,
    PlanRunner,
    false,
    no_failures,
    nothing,
    positive,
)
from cache_service.integrations.django_redis_compat import DjangoRedisAPI, django_redis_options

__all__ = ["DjangoCache", "DjangoConfigurationError", "DjangoInvalidCacheKey"]

_MADE_KEYS = 4096  # made keys remembered per cache (the dict is emptied when full)


class DjangoConfigurationError(ConfigurationError, ImproperlyConfigured):  # type: ignore[misc]
    """A bad ``CACHES`` entry: both our ConfigurationError and Django's ImproperlyConfigured."""


class DjangoInvalidCacheKey(ConfigurationError, InvalidCacheKey):  # type: ignore[misc]
    """A key the library refuses (see ``keys``): both ConfigurationError and Django's
    InvalidCacheKey."""


def _location(server: object) -> object:
    if isinstance(server, (list, tuple)):
        if len(server) != 1:
            raise DjangoConfigurationError(
                f"CACHES LOCATION: one Redis URL is expected, got {len(server)} "
                f"(Sentinel and Cluster take their nodes in one URL)")
        return server[0]
    return server


class DjangoCache(DjangoRedisAPI, PlanRunner, BaseCache):  # type: ignore[misc]
    """``django.core.cache.backends.base.BaseCache`` over a CacheService."""

    def __init__(self, server: object, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        options, self._reverse_key = django_redis_options(
            params.get("OPTIONS") or {}, DjangoConfigurationError)
        signing_key = options.pop("SIGNING_KEY", options.pop("signing_key", None))
        prefix = options.pop("PREFIX", options.pop("prefix", None))
        try:
            secret = settings.SECRET_KEY
        except (ImproperlyConfigured, AttributeError):  # "must not be empty"
            secret = None
        if prefix is None:
            prefix = service_prefix("django", self.key_prefix)
        self._made: dict[tuple[Any, int | None], str] = {}
        self._service, self._aservice = build_services(
            ("CACHES LOCATION", "CACHES OPTIONS"), _location(server),
            prefix, options, keys=SigningKeys(
                (("CACHES OPTIONS['SIGNING_KEY']", signing_key),), ("SECRET_KEY", secret),
                "django-cache", "set OPTIONS['SIGNING_KEY'] (16+ bytes) or SECRET_KEY (32+ "
                "characters)"),
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
        if timeout is None or timeout >= FOREVER:  # longer than any deployment: "forever"
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
        try:
            self._service.full_key(made)
        except ConfigurationError as exc:  # Django's way to refuse a key: InvalidCacheKey
            raise DjangoInvalidCacheKey(str(exc)) from None
        return made

    def _keys(self, keys: Iterable[Any], version: int | None) -> dict[str, Any]:
        return {self._key(k, version): k for k in keys}

    # Every method but get is a plan: which service method to call with what, and how its
    # result becomes Django's. ``_run`` / ``_arun`` execute a plan on the CacheService / the
    # AsyncCacheService, so each rule below is written once for both families.
    def _add(self, key: Any, value: Any, timeout: Any, version: int | None) -> Plan:
        k, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:  # stored and expired at once: True if nothing was there
            return Plan("exists", (k,), operator.not_)
        return Plan("add", (k, value, ttl), values=(value,), oversize=Plan("", finish=false))

    def _set(self, key: Any, value: Any, timeout: Any, version: int | None) -> Plan:
        k, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:
            return Plan("delete", (k,), nothing)
        return Plan("set", (k, value, ttl), values=(value,),
                     oversize=Plan("delete", (k,), nothing))

    def _touch(self, key: Any, timeout: Any, version: int | None) -> Plan:
        k, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:
            return Plan("delete", (k,), positive)
        return Plan("touch", (k, ttl))

    def _delete(self, key: Any, version: int | None) -> Plan:
        return Plan("delete", (self._key(key, version),), positive)

    def _get_many(self, keys: Iterable[Any], version: int | None) -> Plan:
        made = self._keys(keys, version)
        return Plan("get_many", (list(made),),
                     lambda found: {made[k]: v for k, v in found.items()})

    def _has_key(self, key: Any, version: int | None) -> Plan:
        return Plan("exists", (self._key(key, version),))

    def _incr(self, key: Any, delta: int, version: int | None,
              ignore_key_check: bool) -> tuple[Plan, Plan]:
        """Django's incr: ``ValueError`` on a missing key (ours would start it at 0);
        django-redis' ``ignore_key_check=True`` starts it at 0 with the cache's TIMEOUT."""
        k = self._key(key, version)
        if ignore_key_check:
            return NOTHING, Plan("incr", (k, delta, self._ttl(DEFAULT_TIMEOUT) or FOREVER))

        def present(found: bool) -> None:
            if not found:
                raise ValueError(f"Key '{key}' not found.")

        return Plan("exists", (k,), present), Plan("incr", (k, delta))

    def _set_many(self, data: Mapping[Any, Any], timeout: Any, version: int | None) -> Plan:
        made = {self._key(k, version): v for k, v in data.items()}
        ttl = self._ttl(timeout)
        if not made:
            return NOTHING_FAILED
        if ttl is None:
            return Plan("delete", tuple(made), no_failures)
        return Plan("set_many", (made, ttl), no_failures, tuple(made.values()),
                     oversize=Plan("delete", tuple(made), lambda _: list(data)))

    def _delete_many(self, keys: Iterable[Any], version: int | None) -> Plan:
        made = tuple(self._keys(keys, version))
        return Plan("delete", made, nothing) if made else NOTHING

    # -- blocking API -------------------------------------------------------------------------
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._service.get(self._key(key, version), default)

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
            version: int | None = None) -> bool:
        return bool(self._run(self._add(key, value, timeout, version)))

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
            version: int | None = None, *, nx: bool = False, xx: bool = False) -> Any:
        """Django's set; django-redis' ``nx=True`` (only if absent: ``add``) and ``xx=True``
        (only if present) return whether it was stored."""
        if nx or xx:
            return self._drive(self._flow_set(key, value, timeout, version, nx=nx))
        self._run(self._set(key, value, timeout, version))
        return None

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return bool(self._run(self._touch(key, timeout, version)))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return bool(self._run(self._delete(key, version)))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return self._run(self._get_many(keys, version))  # type: ignore[no-any-return]

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return bool(self._run(self._has_key(key, version)))

    def incr(self, key: Any, delta: int = 1, version: int | None = None, *,
             ignore_key_check: bool = False) -> int:
        check, incr = self._incr(key, delta, version, ignore_key_check)
        self._run(check)
        return int(self._run(incr))

    def set_many(self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT,
                 version: int | None = None) -> list[Any]:
        return self._run(self._set_many(data, timeout, version))  # type: ignore[no-any-return]

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        self._run(self._delete_many(keys, version))

    def clear(self) -> None:
        """Remove this cache's keys (its namespace), nothing else."""
        self._run(CLEAR)

    def close(self, **kwargs: Any) -> None:
        """Nothing to do per request: connections are pooled per process and target."""

    # -- native async API: the same plans, awaited on the AsyncCacheService ---------------------
    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return await self._aservice.get(self._key(key, version), default)

    async def aadd(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
                   version: int | None = None) -> bool:
        return bool(await self._arun(self._add(key, value, timeout, version)))

    async def aset(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
                   version: int | None = None, *, nx: bool = False, xx: bool = False) -> Any:
        if nx or xx:
            return await self._adrive(self._flow_set(key, value, timeout, version, nx=nx))
        await self._arun(self._set(key, value, timeout, version))
        return None

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT,
                     version: int | None = None) -> bool:
        return bool(await self._arun(self._touch(key, timeout, version)))

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return bool(await self._arun(self._delete(key, version)))

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return await self._arun(self._get_many(keys, version))  # type: ignore[no-any-return]

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return bool(await self._arun(self._has_key(key, version)))

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None, *,
                    ignore_key_check: bool = False) -> int:
        check, incr = self._incr(key, delta, version, ignore_key_check)
        await self._arun(check)
        return int(await self._arun(incr))

    async def aset_many(self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT,
                        version: int | None = None) -> list[Any]:
        return await self._arun(  # type: ignore[no-any-return]
            self._set_many(data, timeout, version))

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        await self._arun(self._delete_many(keys, version))

    async def aclear(self) -> None:
        await self._arun(CLEAR)

    async def aclose(self, **kwargs: Any) -> None:
        """Nothing to do per request (see ``close``)."""


