"""dogpile.cache backend on CacheService (extra ``dogpile``), registered as ``"cache_service"``.

::

    from dogpile.cache import make_region
    region = make_region().configure(
        "cache_service", expiration_time=300,
        arguments={"url": "redis://127.0.0.1:6379/0", "signing_key": os.environ["KEY"]})

``arguments``: ``url`` (any URL we accept, ``memory://`` too), ``signing_key`` (16+ bytes, else
``$CACHE_SERVICE_SIGNING_KEY``; values are dogpile ``CachedValue`` tuples, pickled and signed),
``prefix`` (service namespace, default ``dogpile``), ``redis_expiration_time`` (seconds a value
lives in Redis; default: no expiry, dogpile's ``expiration_time`` decides freshness),
``distributed_lock`` (default True), ``lock_timeout`` (seconds a Redis lock lives, default 30),
``lock_sleep`` (poll interval, default 0.05), plus the service options (``compression``,
``encryption_keys``... apply to the pickled CachedValues). Arguments this backend
does not know are ignored with a warning (dogpile passes a region's whole argument dict).

``get_multi``/``set_multi``/``delete_multi`` are one MGET / pipeline / DEL. ``get_mutex`` is a
Redis lock (SET NX PX + compare-and-delete, under ``cs::lock:``) held together with a
per-process lock; while Redis is out it is the process lock alone. A value over
``max_value_bytes`` is not cached (the key is removed and a warning logged): the region
recomputes it next time instead of failing.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from dogpile.cache.api import NO_VALUE, CacheBackend, CacheMutex

from cache_service._ops.loading import UNLOCK, lock_key, new_token
from cache_service._ops.protocol import Op, Unavailable, WrongType
from cache_service._ops.requests import Exists, Script, Set
from cache_service._runtime.view import runtime_view
from cache_service.codecs import serializer_name
from cache_service.errors import ConfigurationError, ValueTooLargeError
from cache_service.integrations._common import (
    ENV_KEY,
    FOREVER,
    SERVICE_OPTIONS,
    SigningKeys,
    build_services,
    not_cached,
)
from cache_service.keys import validate_key
from cache_service.service import CacheService

__all__ = ["CacheServiceBackend", "CacheServiceMutex"]

_OWN = frozenset({"url", "signing_key", "prefix", "redis_expiration_time",
                  "distributed_lock", "lock_timeout", "lock_sleep"})
# One process lock per lock name while some mutex for it exists (weak: names come and go).
_PROCESS_LOCKS: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(name: str) -> threading.Lock:
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.get(name)
        if lock is None:
            lock = _PROCESS_LOCKS[name] = threading.Lock()
        return lock


def _take(name: str, token: str, px: int) -> Op[bool]:
    return bool((yield Set(name, token, px, nx=True)))


def _held(name: str) -> Op[bool]:
    return bool((yield Exists(name)))


def _release(name: str, token: str) -> Op[None]:
    yield Script(UNLOCK, (name,), (token,))


class CacheServiceMutex(CacheMutex):
    """A per-process lock, plus a Redis lock while Redis is reachable."""

    def __init__(self, service: CacheService, key: str, timeout: float, sleep: float) -> None:
        self._view = runtime_view(service)
        self._name = lock_key(service.prefix, validate_key(key))
        self._local = _process_lock(self._name)
        self._px = max(1, int(timeout * 1000))
        self._sleep = sleep
        self._token: str | None = None

    def _redis(self) -> bool:
        return self._view.uses_redis()

    def acquire(self, wait: bool = True) -> bool:
        if not self._local.acquire(wait):
            return False
        token = new_token()
        try:
            while self._redis():
                if self._view.driver.run(_take(self._name, token, self._px)):
                    self._token = token
                    return True
                if not wait:
                    self._local.release()
                    return False
                time.sleep(self._sleep)
        except (Unavailable, WrongType):
            pass  # Redis left: the process lock alone
        except BaseException:
            self._local.release()
            raise
        return True  # Redis out: the process lock alone

    def release(self) -> None:
        token, self._token = self._token, None
        try:
            if token is not None and self._redis():
                self._view.driver.run(_release(self._name, token))
        except (Unavailable, WrongType):
            pass  # it expires by itself
        finally:
            self._local.release()

    def locked(self) -> bool:
        if self._local.locked():
            return True
        try:
            return self._redis() and self._view.driver.run(_held(self._name))
        except (Unavailable, WrongType):
            return False


class CacheServiceBackend(CacheBackend):
    """dogpile.cache backend storing ``CachedValue`` objects through a CacheService."""

    serializer = None  # our codec serialises (signed pickle); dogpile hands us CachedValues
    deserializer = None

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        args = dict(arguments)  # never modify the caller's dict
        unknown = sorted(set(args) - _OWN - SERVICE_OPTIONS)
        if unknown:
            warnings.warn(f"dogpile backend 'cache_service': ignoring unknown arguments "
                          f"{unknown}", UserWarning, stacklevel=3)
            for name in unknown:
                del args[name]
        expiry = args.pop("redis_expiration_time", 0) or 0
        self.distributed_lock = bool(args.pop("distributed_lock", True))
        self.lock_timeout = float(args.pop("lock_timeout", 30.0))
        self.lock_sleep = float(args.pop("lock_sleep", 0.05))
        for name in ("lock_timeout", "lock_sleep"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"dogpile arguments['{name}'] must be > 0")
        if isinstance(expiry, bool) or not isinstance(expiry, (int, float)) or expiry < 0:
            raise ConfigurationError(
                f"dogpile arguments['redis_expiration_time'] must be seconds >= 0, got {expiry!r}")
        self._ttl = float(expiry) if expiry else FOREVER
        if args.get("serializer") is not None and serializer_name(
                args["serializer"], "dogpile arguments['serializer']") != "pickle":
            raise ConfigurationError("dogpile arguments['serializer']: dogpile hands the "
                                     "backend CachedValue objects, which only the signed "
                                     "pickle stores; drop it (compression and encryption_keys "
                                     "work with the pickle)")
        url = args.pop("url", None)
        prefix = args.pop("prefix", "dogpile")
        keys = SigningKeys((("dogpile arguments['signing_key']", args.pop("signing_key", None)),
                            ("$CACHE_SERVICE_SIGNING_KEY", os.environ.get(ENV_KEY))),
                           help="pass arguments['signing_key'] (16+ bytes) or set "
                                "$CACHE_SERVICE_SIGNING_KEY")
        self._service, _ = build_services(
            ("dogpile arguments['url']", "dogpile arguments"), url, prefix, args, keys=keys)

    @property
    def service(self) -> CacheService:
        """The CacheService under this backend."""
        return self._service

    def has_lock_timeout(self) -> bool:
        return self.distributed_lock

    def get_mutex(self, key: str) -> CacheServiceMutex | None:
        if not self.distributed_lock:
            return None  # dogpile's own per-process lock
        return CacheServiceMutex(self._service, key, self.lock_timeout, self.lock_sleep)

    def get(self, key: str) -> Any:
        return self._service.get(key, NO_VALUE)

    def get_multi(self, keys: Iterable[str]) -> list[Any]:
        names = list(keys)
        found = self._service.get_many(names)
        return [found.get(k, NO_VALUE) for k in names]

    def set(self, key: str, value: Any) -> None:
        try:
            self._service.set(key, value, self._ttl)
        except ValueTooLargeError as exc:
            not_cached(self._service, exc, key)

    def set_multi(self, mapping: Mapping[str, Any]) -> None:
        if mapping:
            try:
                self._service.set_many(mapping, self._ttl)
            except ValueTooLargeError as exc:  # nothing of the batch was written
                not_cached(self._service, exc, *mapping)

    def delete(self, key: str) -> None:
        self._service.delete(key)

    def delete_multi(self, keys: Iterable[str]) -> None:
        names = list(keys)
        if names:
            self._service.delete(*names)
