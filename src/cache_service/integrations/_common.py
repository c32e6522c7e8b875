"""What the framework backends share: options -> services, signing keys, "forever" (pure).

Each framework hands us a URL and a bag of options under its own setting names; this module
turns them into one ``CacheService`` and its ``AsyncCacheService`` twin on the same target, and
re-raises every configuration error with the name of the framework setting at fault.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cache_service.aio import AsyncCacheService
from cache_service.codec import MIN_KEY_DISTINCT, PickleCodec, check_signing_key
from cache_service.codecs import OPTION_ALIASES, serializer_name
from cache_service.config import parse_url
from cache_service.core import ServiceCore
from cache_service.errors import ConfigurationError
from cache_service.keys import validate_prefix
from cache_service.service import CacheService

__all__ = ["ENV_KEY", "FOREVER", "MIN_SECRET_CHARS", "SERVICE_OPTIONS", "SigningKeys",
           "build_services", "derive_key", "not_cached", "service_prefix"]

log = logging.getLogger("cache_service")

# What a framework's "no expiry" (None / 0) becomes: a TTL of 100 years. Every value of ours
# has a TTL (the memory fallback is bounded by it too); this one outlives any deployment.
FOREVER = 100 * 365 * 86400.0

# Constructor options of the services a backend may pass through (url and prefix are not:
# the framework's own settings give them).
SERVICE_OPTIONS = frozenset(
    name for name, p in inspect.signature(ServiceCore.__init__).parameters.items()
    if p.kind is p.KEYWORD_ONLY and not name.startswith("_")
    and name not in ("url", "clock", "wall_clock")
)


# An application secret a signing key may be derived from: at least this long (characters of
# text, bytes of bytes) and MIN_KEY_DISTINCT different ones. "dev", "secret", a tutorial's
# value: anyone could derive the key and then forge a pickle that runs code in the app.
MIN_SECRET_CHARS = 32
ENV_KEY = "CACHE_SERVICE_SIGNING_KEY"  # the environment variable cachelib and dogpile read


def derive_key(secret: object, purpose: str, setting: str = "SECRET_KEY") -> bytes:
    """A signing key for ``purpose`` derived from an application secret (HMAC-SHA256), so the
    secret itself never signs cache payloads; a short or repetitive secret raises
    ConfigurationError naming ``setting``."""
    if not isinstance(secret, (str, bytes)) or len(secret) < MIN_SECRET_CHARS or \
            len(set(secret)) < MIN_KEY_DISTINCT:
        raise ConfigurationError(
            f"{setting}: a signing key is derived from it only if it has at least "
            f"{MIN_SECRET_CHARS} characters, {MIN_KEY_DISTINCT} of them different (e.g. "
            "secrets.token_hex(32)); set a strong one or give the cache its own signing key")
    if isinstance(secret, str):
        secret = secret.encode("utf-8", "surrogatepass")
    return hmac.new(secret, b"cache_service:" + purpose.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class SigningKeys:
    """Where a backend's signing key comes from: the first explicit setting that is set (not
    None), else one derived from an application secret. The one chosen is checked: a weak
    one is refused, naming its setting, never skipped for the next."""

    explicit: tuple[tuple[str, object], ...]
    """``(setting name, value)`` in order of precedence."""
    secret: tuple[str, object] | None = None
    """``(setting name, value)`` of the application secret, if the framework has one."""
    purpose: str = ""
    help: str = ""
    """How to set a key, for the error messages."""

    def resolve(self) -> bytes | None:
        """The signing key (None: no setting is set); a weak one raises ConfigurationError
        naming its setting."""
        for setting, value in self.explicit:
            if value is not None:
                return check_signing_key(value, setting)
        if self.secret is not None and self.secret[1] is not None:
            return derive_key(self.secret[1], self.purpose, self.secret[0])
        return None


def service_prefix(base: str, namespace: str) -> str:
    """``base`` plus a framework's key prefix when it has one, as a valid service prefix (a
    prefix with other characters is hashed), so ``clear()`` reaches only that namespace."""
    if not namespace:
        return base
    candidate = f"{base}:{namespace}"
    try:
        return validate_prefix(candidate)
    except ConfigurationError:
        return f"{base}:h{hashlib.sha1(namespace.encode()).hexdigest()[:16]}"


def not_cached(service: CacheService, exc: Exception, *keys: str) -> bool:
    """A value over ``max_value_bytes`` is not cached (memcached-style): remove ``keys`` so no
    older value is served in its place, log it; False (for a backend's "stored?" result)."""
    if keys:
        service.delete(*keys)
    log.warning("not cached: %s (raise the max_value_bytes option to cache it)", exc)
    return False


def build_services(
    settings: tuple[str, str], url: object, prefix: str, options: Mapping[str, Any], *,
    keys: SigningKeys,
    error: Callable[[str], Exception] = ConfigurationError,
) -> tuple[CacheService, AsyncCacheService]:
    """The sync and async services for ``url`` with ``options`` (service option names, any
    case; django-redis' ``SERIALIZER``/``COMPRESSOR`` too); a bad value raises ``error``
    naming the setting: ``settings`` are the framework's names for the URL and for the
    options. Values are signed pickles unless ``serializer`` is json or msgpack."""
    url_setting, setting = settings
    kwargs: dict[str, Any] = {}
    for raw_name, value in options.items():
        name = str(raw_name).lower()
        name = OPTION_ALIASES.get(name, name)  # django-redis' COMPRESSOR
        if name not in SERVICE_OPTIONS:
            raise error(f"{setting}: unknown option {raw_name!r}; the options are "
                        f"{', '.join(sorted(SERVICE_OPTIONS))}")
        kwargs[name] = value
    if not isinstance(url, str) or not url:
        raise error(f"{url_setting}: the location must be one URL string (redis://, rediss://, "
                    f"unix://, redis+sentinel://, redis+cluster:// or memory://), got {url!r}")
    try:
        parse_url(url)
    except ConfigurationError as exc:
        raise error(f"{url_setting}: {exc}") from None
    codec = kwargs.pop("codec", None)
    serializer = kwargs.pop("serializer", None)
    try:
        chosen = "pickle" if serializer is None else serializer_name(serializer)
    except ConfigurationError as exc:
        raise error(f"{setting}: {exc}") from None
    if chosen != "pickle":  # json or msgpack: no signing key, values of exact types only
        if codec is not None:
            raise error(f"{setting}: give codec or serializer, not both")
        kwargs["serializer"] = chosen
    elif codec is None:
        try:
            key = keys.resolve()
        except ConfigurationError as exc:
            raise error(f"{exc} ({keys.help})") from None
        if key is None:
            raise error(f"{setting}: values are pickled, so a signing key is needed: "
                        f"{keys.help}")
        codec = PickleCodec(signing_key=key)
    elif not isinstance(codec, PickleCodec):
        raise error(f"{setting}: codec must be a PickleCodec (this framework caches arbitrary "
                    f"Python objects), got {codec!r}")
    try:
        sync = CacheService(prefix, url=url, codec=codec, **kwargs)
        return sync, AsyncCacheService(prefix, url=url, codec=codec, **kwargs)
    except (ConfigurationError, TypeError) as exc:
        raise error(f"{setting}: {exc}") from None
