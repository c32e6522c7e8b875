"""cachelib backend on CacheService (extras ``flask``); Flask-Caching uses it through
``cache_service.integrations.flask.make_cache``.

Directly::

    from cache_service.integrations.cachelib import CachelibCache
    cache = CachelibCache("redis://127.0.0.1:6379/0", key_prefix="app:",
                          signing_key=os.environ["CACHE_SIGNING_KEY"])

cachelib semantics: ``timeout=None`` is the default timeout, ``0`` never expires (a negative
one expires at once), ``set``/``add`` return a bool, ``inc`` on a missing key starts at 0,
``clear()`` removes only this prefix's keys (never FLUSHDB); a value over
``max_value_bytes`` is not cached (``set`` returns False, the key is removed, it is logged).
Values are pickled and signed (``PickleCodec``): the key is ``signing_key=``, else
``$CACHE_SERVICE_SIGNING_KEY`` (16+ bytes each); a weak one is a startup error naming it.
cachelib's ``serializer`` attribute is not used (the codec is); the ``serializer`` option
(``json``, ``msgpack``: no signing key, exact types only), ``compression`` and
``encryption_keys`` are keyword options like every service option. Redis failing never
raises: calls go to the memory fallback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from cachelib import BaseCache

from cache_service.errors import ConfigurationError, ValueTooLargeError
from cache_service.integrations._common import (
    ENV_KEY,
    FOREVER,
    SigningKeys,
    build_services,
    not_cached,
)
from cache_service.redis_glob import escape_glob

__all__ = ["FLASK_FACTORY", "CachelibCache"]

FLASK_FACTORY = "cache_service.integrations.flask.make_cache"
"""The ``CACHE_TYPE`` that gives Flask-Caching this backend."""

_KEY_HELP = "pass signing_key= (16+ bytes) or set $CACHE_SERVICE_SIGNING_KEY"
_DIRECT = ("CachelibCache(url=...)", "CachelibCache options")


class CachelibCache(BaseCache):
    """``cachelib.BaseCache`` over a CacheService; also a Flask-Caching ``CACHE_TYPE``."""

    def __init__(
        self,
        url: str | None = None,
        default_timeout: int | timedelta = 300,
        key_prefix: str | Callable[[], str] | None = None,
        *,
        signing_key: bytes | str | None = None,
        prefix: str = "cachelib",
        ignore_delete_many_errors: bool = True,
        setting_names: tuple[str, str] = _DIRECT,
        **options: Any,
    ) -> None:
        """``setting_names``: what errors call the URL and the options (a framework adapter
        passes its settings' names)."""
        if url is None:  # how Flask-Caching calls a CACHE_TYPE path containing "cachelib"
            raise ConfigurationError(
                "CachelibCache needs the Redis URL: CachelibCache(url=...). Under "
                f"Flask-Caching set CACHE_TYPE = {FLASK_FACTORY!r} (the factory reads "
                "CACHE_REDIS_URL); CACHE_TYPE = "
                "'cache_service.integrations.cachelib.CachelibCache' is no longer supported")
        super().__init__(default_timeout, ignore_delete_many_errors=ignore_delete_many_errors)
        self.key_prefix = key_prefix or ""
        keys = SigningKeys((("signing_key", signing_key), (f"${ENV_KEY}", os.environ.get(ENV_KEY))),
                           None, "cachelib", _KEY_HELP)
        self._service, _ = build_services(setting_names, url, prefix, options, keys=keys)

    @property
    def service(self) -> Any:
        """The CacheService under this cache."""
        return self._service

    def _k(self, key: Any) -> str:
        prefix = self.key_prefix if isinstance(self.key_prefix, str) else self.key_prefix()
        return f"{prefix}{key}"

    def _ttl(self, timeout: int | timedelta | None) -> float | None:
        """Seconds to keep a value; None: expire at once (a negative timeout)."""
        seconds = self._normalize_timeout(timeout)
        if seconds == 0 or seconds >= FOREVER:  # longer than any deployment: "forever"
            return FOREVER
        return float(seconds) if seconds > 0 else None

    def get(self, key: Any) -> Any:
        return self._service.get(self._k(key))

    def get_many(self, *keys: Any) -> list[Any]:
        made = [self._k(k) for k in keys]
        found = self._service.get_many(made)
        return [found.get(k) for k in made]

    def set(self, key: Any, value: Any, timeout: int | timedelta | None = None) -> bool:
        ttl = self._ttl(timeout)
        if ttl is None:
            self._service.delete(self._k(key))
            return True
        try:
            self._service.set(self._k(key), value, ttl)
        except ValueTooLargeError as exc:
            return not_cached(self._service, exc, self._k(key))
        return True

    def add(self, key: Any, value: Any, timeout: int | timedelta | None = None) -> bool:
        ttl = self._ttl(timeout)
        if ttl is None:
            return not self._service.exists(self._k(key))
        try:
            return self._service.add(self._k(key), value, ttl)
        except ValueTooLargeError as exc:
            return not_cached(self._service, exc)

    def set_many(self, mapping: Mapping[Any, Any],
                 timeout: int | timedelta | None = None) -> list[Any]:
        ttl = self._ttl(timeout)
        made = {self._k(k): v for k, v in mapping.items()}
        if made:
            if ttl is None:
                self._service.delete(*made)
            else:
                try:
                    self._service.set_many(made, ttl)
                except ValueTooLargeError as exc:  # nothing of the batch was written
                    not_cached(self._service, exc, *made)
                    return []
        return list(mapping)

    def delete(self, key: Any) -> bool:
        return self._service.delete(self._k(key)) > 0

    def delete_many(self, *keys: Any) -> list[Any]:
        if keys:
            self._service.delete(*(self._k(k) for k in keys))
        return list(keys)

    def has(self, key: Any) -> bool:
        return self._service.exists(self._k(key))

    def clear(self) -> bool:
        prefix = self._k("")
        if prefix:
            self._service.invalidate_pattern(escape_glob(prefix) + "*")
        else:
            self._service.clear_all()
        return True

    def inc(self, key: Any, delta: int = 1) -> int:
        return self._service.incr(self._k(key), delta)

    def dec(self, key: Any, delta: int = 1) -> int:
        return self._service.decr(self._k(key), delta)

