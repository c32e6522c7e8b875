"""cachelib / Flask-Caching backend on CacheService (extras ``flask``).

Directly::

    from cache_service.integrations.cachelib import CachelibCache
    cache = CachelibCache("redis://127.0.0.1:6379/0", key_prefix="app:",
                          signing_key=os.environ["CACHE_SIGNING_KEY"])

With Flask-Caching::

    app.config.update(CACHE_TYPE="cache_service.integrations.cachelib.CachelibCache",
                      CACHE_REDIS_URL="redis://127.0.0.1:6379/0", CACHE_KEY_PREFIX="app:",
                      CACHE_DEFAULT_TIMEOUT=300)   # CACHE_OPTIONS: service options
    cache = Cache(app)

cachelib semantics: ``timeout=None`` is the default timeout, ``0`` never expires (a negative
one expires at once), ``set``/``add`` return a bool, ``inc`` on a missing key starts at 0,
``clear()`` removes only this prefix's keys (never FLUSHDB); a value over
``max_value_bytes`` is not cached (``set`` returns False, the key is removed, it is logged).
Values are pickled and signed (``PickleCodec``): the key is ``signing_key=``, else (under
Flask-Caching) ``CACHE_SIGNING_KEY``, else ``$CACHE_SERVICE_SIGNING_KEY`` (16+ bytes each),
else (under Flask-Caching) one derived from the app's ``SECRET_KEY`` (32+ characters); the
first that is set is used, and a weak one is a startup error naming it. cachelib's
``serializer`` attribute is not used (the codec is); the ``serializer`` option (``json``,
``msgpack``: no signing key, exact types only), ``compression`` and ``encryption_keys`` go in
``CACHE_OPTIONS`` like every service option. Redis failing never raises: calls go to
the memory fallback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import FrameType
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

__all__ = ["CachelibCache"]

_KEY_HELP = ("pass signing_key= (16+ bytes) or set $CACHE_SERVICE_SIGNING_KEY; under "
             "Flask-Caching set CACHE_SIGNING_KEY (16+ bytes) or SECRET_KEY (32+ characters)")


def _keys(signing_key: object, config: Mapping[str, Any] | None) -> SigningKeys:
    """Explicit keys first (argument, Flask's CACHE_SIGNING_KEY, the environment), then one
    derived from Flask's SECRET_KEY."""
    explicit: tuple[tuple[str, object], ...] = (("signing_key", signing_key),)
    if config is not None:
        explicit += (("CACHE_SIGNING_KEY", config.get("CACHE_SIGNING_KEY")),)
    explicit += ((f"${ENV_KEY}", os.environ.get(ENV_KEY)),)
    secret = ("SECRET_KEY", config.get("SECRET_KEY")) if config is not None else None
    return SigningKeys(explicit, secret, "cachelib", _KEY_HELP)


def _flask_config() -> Mapping[str, Any] | None:
    """The config Flask-Caching is building this cache from, if it is the caller.

    Flask-Caching calls any ``CACHE_TYPE`` whose path contains "cachelib" as
    ``cls(default_timeout=..., **CACHE_OPTIONS)`` instead of through ``factory`` (its rule for
    ``cachelib.*`` types), so the URL and prefix settings are read from that call's frame.
    """
    try:
        frame: FrameType | None = sys._getframe(2)
    except ValueError:  # called from the outermost frame
        return None
    for _ in range(4):
        if frame is None:
            return None
        if frame.f_code.co_name == "_set_cache" and "flask_caching" in frame.f_code.co_filename:
            config = frame.f_locals.get("config")
            return config if isinstance(config, Mapping) else None
        frame = frame.f_back
    return None


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
        **options: Any,
    ) -> None:
        config = _flask_config() if url is None else None
        if config is not None:
            url = config.get("CACHE_REDIS_URL")
            key_prefix = key_prefix or config.get("CACHE_KEY_PREFIX")
        super().__init__(default_timeout, ignore_delete_many_errors=ignore_delete_many_errors)
        self.key_prefix = key_prefix or ""
        settings = ("CACHE_REDIS_URL", "CACHE_OPTIONS") if config is not None else (
            "CachelibCache(url=...)", "CachelibCache options")
        # Flask-Caching passes a copy of app.config, SECRET_KEY included
        self._service, _ = build_services(settings, url, prefix, options,
                                          keys=_keys(signing_key, config))

    @classmethod
    def factory(cls, app: Any, config: Mapping[str, Any], args: list[Any],
                kwargs: dict[str, Any]) -> CachelibCache:
        """Flask-Caching's factory protocol, for a ``CACHE_TYPE`` path of one's own without
        "cachelib" in it (``make_cache = CachelibCache.factory`` in ``myapp/caching.py``,
        ``CACHE_TYPE="myapp.caching.make_cache"``)."""
        kwargs.setdefault("key_prefix", config.get("CACHE_KEY_PREFIX"))
        keys = _keys(kwargs.pop("signing_key", None),
                     {**config, "SECRET_KEY": app.config.get("SECRET_KEY")})
        try:
            kwargs["signing_key"] = keys.resolve()
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} ({_KEY_HELP})") from None
        return cls(config.get("CACHE_REDIS_URL"), *args, **kwargs)

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

