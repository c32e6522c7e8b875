"""Flask-Caching backend on CacheService (extras ``flask``), through Flask-Caching's documented
factory for custom backends::

    app.config.update(CACHE_TYPE="cache_service.integrations.flask.make_cache",
                      CACHE_REDIS_URL="redis://127.0.0.1:6379/0", CACHE_KEY_PREFIX="app:",
                      CACHE_DEFAULT_TIMEOUT=300)   # CACHE_OPTIONS: service options
    cache = Cache(app)

The backend is a ``CachelibCache`` (its semantics are there). The signing key for the pickled
values is ``CACHE_SIGNING_KEY``, else ``$CACHE_SERVICE_SIGNING_KEY`` (16+ bytes each), else one
derived from the app's ``SECRET_KEY`` (32+ characters); the first that is set is used, and a
weak one is a startup error naming it. Settings read: ``CACHE_REDIS_URL`` (required: any URL
the service takes, ``memory://`` included), ``CACHE_KEY_PREFIX``, ``CACHE_DEFAULT_TIMEOUT``,
``CACHE_IGNORE_ERRORS``, ``CACHE_OPTIONS`` (service options, e.g.
``{"near_cache": True}``), ``CACHE_SIGNING_KEY``, ``SECRET_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cache_service.errors import ConfigurationError
from cache_service.integrations._common import ENV_KEY, SigningKeys
from cache_service.integrations.cachelib import CachelibCache

__all__ = ["make_cache"]

_KEY_HELP = ("set CACHE_SIGNING_KEY (16+ bytes), $CACHE_SERVICE_SIGNING_KEY, or a SECRET_KEY "
             "of 32+ characters")
_SETTINGS = ("CACHE_REDIS_URL", "CACHE_OPTIONS")


def make_cache(app: Any, config: Mapping[str, Any], args: list[Any],
               kwargs: dict[str, Any]) -> CachelibCache:
    """Flask-Caching's factory for ``CACHE_TYPE``: ``(app, config, CACHE_ARGS, options)``.

    ``options`` is ``default_timeout``, ``ignore_delete_many_errors`` and ``CACHE_OPTIONS``.
    """
    if args:
        raise ConfigurationError(f"CACHE_ARGS: this backend takes no positional arguments, got "
                                 f"{len(args)}; put service options in CACHE_OPTIONS")
    options = dict(kwargs)
    secret = config.get("SECRET_KEY", app.config.get("SECRET_KEY"))
    keys = SigningKeys((("signing_key", options.pop("signing_key", None)),
                        ("CACHE_SIGNING_KEY", config.get("CACHE_SIGNING_KEY")),
                        (f"${ENV_KEY}", os.environ.get(ENV_KEY))),
                       ("SECRET_KEY", secret), "cachelib", _KEY_HELP)
    try:
        key = keys.resolve()
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} ({_KEY_HELP})") from None
    if key is not None:
        options["signing_key"] = key
    elif not {str(name).lower() for name in options} & {"serializer", "codec"}:
        raise ConfigurationError(f"values are pickled, so a signing key is needed: {_KEY_HELP}")
    options.setdefault("key_prefix", config.get("CACHE_KEY_PREFIX"))
    url = config.get("CACHE_REDIS_URL")
    if url is None:
        raise ConfigurationError(
            "CACHE_REDIS_URL: the cache's location is required (redis://, rediss://, unix://, "
            "redis+sentinel://, redis+cluster:// or memory://)")
    return CachelibCache(url, setting_names=_SETTINGS, **options)
