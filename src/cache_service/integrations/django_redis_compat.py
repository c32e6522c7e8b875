"""django-redis' API on DjangoCache, and its ``OPTIONS`` names mapped or refused.

A project moving from ``django_redis.cache.RedisCache`` changes ``BACKEND`` and keeps its
calls: ``delete_pattern``, ``iter_keys``, ``keys``, ``ttl``, ``pttl``, ``expire``,
``pexpire``, ``expire_at``, ``pexpire_at``, ``persist``, ``lock``, ``incr(...,
ignore_key_check=)`` and ``set(..., nx=/xx=)`` keep django-redis' results (0 for the ttl of
a missing key, None for one without expiry...), each with an ``a``-prefixed awaitable twin.
Where ours differ it is on the safe side: patterns reach this cache's own keys only (never
another program's, never another ``KEY_PREFIX``), and Redis being down never raises.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.utils.module_loading import import_string

from cache_service.integrations._common import FOREVER
from cache_service.integrations._django_plan import Flow, Plan
from cache_service.integrations.django_lock import AsyncDjangoLock, DjangoLock
from cache_service.redis_glob import escape_glob

__all__ = ["DjangoRedisAPI", "default_reverse_key", "django_redis_options"]

# django-redis OPTIONS whose lowercase name is not ours: -> our option
_RENAMED = {"SOCKET_CONNECT_TIMEOUT": "connect_timeout"}
# CONNECTION_POOL_KWARGS keys we take (-> our option)
_POOL_KWARGS = {"max_connections": "max_connections", "socket_timeout": "socket_timeout",
                "socket_connect_timeout": "connect_timeout", "password": "password",
                "username": "username", "ssl_ca_certs": "ssl_ca_certs",
                "ssl_certfile": "ssl_certfile", "ssl_keyfile": "ssl_keyfile"}
# django-redis OPTIONS with no counterpart: what to use instead
_REFUSED = {
    "CONNECTION_POOL_CLASS": "the connection pools are ours (per process and location): "
                             "set max_connections, or connection='wire' for our own layer",
    "CONNECTION_POOL_CLASS_KWARGS": "see CONNECTION_POOL_KWARGS",
    "REDIS_CLIENT_CLASS": "the clients are ours; options such as socket_timeout go in OPTIONS",
    "REDIS_CLIENT_KWARGS": "give the matching service options in OPTIONS (socket_timeout, "
                           "connect_timeout, password, username, ssl_*, max_connections)",
    "PARSER_CLASS": "hiredis is used whenever it is installed (it is a dependency)",
    "SENTINELS": "name the sentinels in LOCATION: redis+sentinel://host1:26379,host2:26379/"
                 "<service_name>/0",
    "SENTINEL_KWARGS": "put the sentinel password in LOCATION or OPTIONS['sentinel_password']",
    "REPLICA_READ_ONLY": "one LOCATION per cache; read_from_replicas=True on a Cluster",
    "CONNECTION_FACTORY": "the connection layer is ours; see the service options",
    "PICKLE_VERSION": "values are pickled with the highest protocol and signed (HMAC-SHA256); "
                      "remove it",
}
# CLIENT_CLASS values: DefaultClient is what we are; the others, what to use instead
_CLIENTS = {
    "DefaultClient": "",
    "ShardClient": "shard with a Redis Cluster: LOCATION redis+cluster://host:port",
    "HerdClient": "get_or_set (single-flight, lock=True, stale_while_revalidate) prevents "
                  "stampedes for every key",
    "SentinelClient": "LOCATION redis+sentinel://host1:26379,host2:26379/<service_name>/0",
}


def default_reverse_key(key: str) -> str:
    """django-redis' default ``REVERSE_KEY_FUNCTION``: the key a made key was made from."""
    return key.split(":", 2)[2]


def django_redis_options(
    options: Mapping[str, Any], error: Callable[[str], Exception],
) -> tuple[dict[str, Any], Callable[[str], str]]:
    """django-redis' ``OPTIONS`` names mapped to ours (the rest pass through unchanged), and
    the reverse key function; a name with no counterpart raises ``error`` naming what to
    use instead."""
    mapped: dict[str, Any] = {}
    reverse: Callable[[str], str] = default_reverse_key
    for name, value in options.items():
        if name in _REFUSED:
            raise error(f"CACHES OPTIONS[{name!r}] (django-redis) has no counterpart here: "
                        f"{_REFUSED[name]}")
        if name == "IGNORE_EXCEPTIONS":  # either way Redis errors never reach a view
            if not isinstance(value, bool):
                raise error(f"CACHES OPTIONS['IGNORE_EXCEPTIONS'] must be a bool, got {value!r}")
        elif name == "CLIENT_CLASS":
            short = str(value).rpartition(".")[2]
            if short not in _CLIENTS:
                raise error(f"CACHES OPTIONS['CLIENT_CLASS']: unknown client {value!r} "
                            "(django_redis.client.DefaultClient is the one we replace)")
            if _CLIENTS[short]:
                raise error(f"CACHES OPTIONS['CLIENT_CLASS']={value!r} has no counterpart "
                            f"here: {_CLIENTS[short]}")
        elif name == "CLOSE_CONNECTION":
            if value:
                raise error("CACHES OPTIONS['CLOSE_CONNECTION']=True has no counterpart here: "
                            "connections are pooled per process and location, shared with "
                            "the other services on it, and never closed per request")
        elif name == "REVERSE_KEY_FUNCTION":
            if value == "django_redis.util.default_reverse_key":  # without django-redis too
                reverse = default_reverse_key
            else:
                reverse = import_string(value) if isinstance(value, str) else value
        elif name == "CONNECTION_POOL_KWARGS":
            if not isinstance(value, Mapping):
                raise error(f"CACHES OPTIONS['CONNECTION_POOL_KWARGS'] must be a dict, got "
                            f"{value!r}")
            for key, item in value.items():
                if key not in _POOL_KWARGS:
                    raise error(
                        f"CACHES OPTIONS['CONNECTION_POOL_KWARGS'][{key!r}] has no "
                        f"counterpart here; the ones we take: {', '.join(sorted(_POOL_KWARGS))} "
                        "(retries and health checks are ours: a failing call goes to the "
                        "fallback at once)")
                mapped[_POOL_KWARGS[key]] = item
        else:
            mapped[_RENAMED.get(name, name)] = value
    return mapped, reverse


def _forever(seconds: float) -> bool:
    """Whether a remaining TTL is our "no expiry" (a 100-year TTL, or a key without one)."""
    return seconds >= FOREVER / 2


def _epoch_seconds(when: datetime | float, scale: float) -> float:
    """``when`` (a datetime, or a Unix time in 1/``scale`` seconds) as Unix seconds."""
    return when.timestamp() if isinstance(when, datetime) else float(when) / scale


class DjangoRedisAPI:
    """django-redis' extra methods (mixed into DjangoCache). Each is a flow of plans over the
    Django backend's own (``_key``, ``_touch``, ``_ttl``...), run blocking or awaited."""

    # provided by DjangoCache
    _reverse_key: Callable[[str], str]
    key_prefix: str
    version: int
    key_func: Callable[[str, str, Any], str]
    _key: Callable[[Any, int | None], str]
    _touch: Callable[[Any, Any, int | None], Plan]
    _add: Callable[[Any, Any, Any, int | None], Plan]
    _set: Callable[[Any, Any, Any, int | None], Plan]
    _ttl: Callable[[Any], float | None]
    _drive: Callable[[Flow], Any]
    _adrive: Callable[[Flow], Any]

    # -- flows ----------------------------------------------------------------------------
    def _pattern(self, search: str, version: int | None, prefix: str | None = None) -> str:
        """django-redis' ``make_pattern``: ``search`` made into a key, prefix and version
        escaped; a prefix of another cache is refused (this one's namespace is all we see)."""
        if prefix is not None and prefix != self.key_prefix:
            raise ValueError(f"prefix={prefix!r}: this cache reaches its own KEY_PREFIX "
                             f"({self.key_prefix!r}) only; use the cache of that prefix")
        return self.key_func(search, escape_glob(self.key_prefix),
                             escape_glob(str(self.version if version is None else version)))

    def _flow_ttl(self, key: Any, version: int | None, scale: int) -> Flow:
        left = yield Plan("ttl", (self._key(key, version),))
        if left is None:
            return 0
        if _forever(left):
            return None
        return int(left * scale + 0.5)  # as Redis rounds TTL and PTTL

    def _flow_expire(self, key: Any, timeout: Any, version: int | None) -> Flow:
        if timeout is DEFAULT_TIMEOUT:
            timeout = self._ttl(DEFAULT_TIMEOUT)
        return bool((yield self._touch(key, timeout, version)))

    def _flow_persist(self, key: Any, version: int | None) -> Flow:
        k = self._key(key, version)
        left = yield Plan("ttl", (k,))
        if left is None or _forever(left):
            return False  # PERSIST: no key, or no expiry to remove
        return bool((yield Plan("touch", (k, FOREVER))))

    def _flow_keys(self, search: str, version: int | None) -> Flow:
        found = yield Plan("keys", (self._pattern(search, version),))
        return [self._reverse_key(k) for k in found]

    def _flow_delete_pattern(self, pattern: str, version: int | None,
                             prefix: str | None) -> Flow:
        return (yield Plan("invalidate_pattern", (self._pattern(pattern, version, prefix),)))

    def _flow_set(self, key: Any, value: Any, timeout: Any, version: int | None, *,
                  nx: bool) -> Flow:
        """``set(..., nx=True)``: ``add``; ``xx=True``: set only if the key holds a value
        (two round trips, not one atomic SET XX)."""
        if nx:
            return bool((yield self._add(key, value, timeout, version)))
        if not (yield Plan("exists", (self._key(key, version),))):
            return False
        yield self._set(key, value, timeout, version)
        return True

    # -- blocking --------------------------------------------------------------------------
    def ttl(self, key: Any, version: int | None = None) -> int | None:
        """Seconds ``key`` has left (rounded as Redis does); 0: no such key; None: no expiry."""
        return self._drive(self._flow_ttl(key, version, 1))  # type: ignore[no-any-return]

    def pttl(self, key: Any, version: int | None = None) -> int | None:
        """Milliseconds ``key`` has left; 0: no such key; None: no expiry."""
        return self._drive(self._flow_ttl(key, version, 1000))  # type: ignore[no-any-return]

    def expire(self, key: Any, timeout: Any, version: int | None = None) -> bool:
        """A new timeout in seconds (0 or less deletes, None: no expiry); False: no key."""
        return bool(self._drive(self._flow_expire(key, timeout, version)))

    def pexpire(self, key: Any, timeout: int, version: int | None = None) -> bool:
        """A new timeout in milliseconds; False: no such key."""
        return bool(self._drive(self._flow_expire(key, timeout / 1000, version)))

    def expire_at(self, key: Any, when: datetime | float, version: int | None = None) -> bool:
        """Expire at ``when`` (a datetime or Unix seconds); False: no such key."""
        left = _epoch_seconds(when, 1) - time.time()
        return bool(self._drive(self._flow_expire(key, left, version)))

    def pexpire_at(self, key: Any, when: datetime | int, version: int | None = None) -> bool:
        """Expire at ``when`` (a datetime or Unix milliseconds); False: no such key."""
        left = _epoch_seconds(when, 1000) - time.time()
        return bool(self._drive(self._flow_expire(key, left, version)))

    def persist(self, key: Any, version: int | None = None) -> bool:
        """Remove ``key``'s expiry; False if there is no key or it had none."""
        return bool(self._drive(self._flow_persist(key, version)))

    def keys(self, search: str, version: int | None = None) -> list[Any]:
        """This cache's keys matching the glob ``search`` (SCAN, never KEYS; at most 100,000)."""
        return self._drive(self._flow_keys(search, version))  # type: ignore[no-any-return]

    def iter_keys(self, search: str, itersize: int | None = None,
                  version: int | None = None) -> Iterator[Any]:
        """``keys(search)`` as an iterator (``itersize`` is accepted; pages are 1,000 keys)."""
        return iter(self.keys(search, version=version))

    def delete_pattern(self, pattern: str, version: int | None = None,
                       prefix: str | None = None, itersize: int | None = None) -> int:
        """Delete this cache's keys matching the glob ``pattern``; how many."""
        return int(self._drive(self._flow_delete_pattern(pattern, version, prefix)))

    def lock(  # noqa: PLR0917 (django-redis' signature)
            self, key: Any, version: int | None = None, timeout: float | None = None,
             sleep: float = 0.1, blocking: bool = True, blocking_timeout: float | None = None,
             thread_local: bool = True) -> DjangoLock:
        """A lock named by ``key`` with redis-py's ``Lock`` API (a context manager)."""
        return DjangoLock(self._drive, self._key(key, version), timeout, sleep=sleep,
                          blocking=blocking, blocking_timeout=blocking_timeout,
                          thread_local=thread_local)

    # -- awaited ---------------------------------------------------------------------------
    async def attl(self, key: Any, version: int | None = None) -> int | None:
        return await self._adrive(self._flow_ttl(key, version, 1))  # type: ignore[no-any-return]

    async def apttl(self, key: Any, version: int | None = None) -> int | None:
        return await self._adrive(  # type: ignore[no-any-return]
            self._flow_ttl(key, version, 1000))

    async def aexpire(self, key: Any, timeout: Any, version: int | None = None) -> bool:
        return bool(await self._adrive(self._flow_expire(key, timeout, version)))

    async def apexpire(self, key: Any, timeout: int, version: int | None = None) -> bool:
        return bool(await self._adrive(self._flow_expire(key, timeout / 1000, version)))

    async def aexpire_at(self, key: Any, when: datetime | float,
                         version: int | None = None) -> bool:
        left = _epoch_seconds(when, 1) - time.time()
        return bool(await self._adrive(self._flow_expire(key, left, version)))

    async def apexpire_at(self, key: Any, when: datetime | int,
                          version: int | None = None) -> bool:
        left = _epoch_seconds(when, 1000) - time.time()
        return bool(await self._adrive(self._flow_expire(key, left, version)))

    async def apersist(self, key: Any, version: int | None = None) -> bool:
        return bool(await self._adrive(self._flow_persist(key, version)))

    async def akeys(self, search: str, version: int | None = None) -> list[Any]:
        return await self._adrive(  # type: ignore[no-any-return]
            self._flow_keys(search, version))

    async def aiter_keys(self, search: str, itersize: int | None = None,
                         version: int | None = None) -> AsyncIterator[Any]:
        for key in await self.akeys(search, version=version):
            yield key

    async def adelete_pattern(self, pattern: str, version: int | None = None,
                              prefix: str | None = None, itersize: int | None = None) -> int:
        return int(await self._adrive(self._flow_delete_pattern(pattern, version, prefix)))

    def alock(  # noqa: PLR0917 (as lock)
            self, key: Any, version: int | None = None, timeout: float | None = None,
              sleep: float = 0.1, blocking: bool = True, blocking_timeout: float | None = None,
              thread_local: bool = True) -> AsyncDjangoLock:
        """``lock`` for ``async with`` (redis.asyncio's ``Lock`` API)."""
        return AsyncDjangoLock(self._adrive, self._key(key, version), timeout, sleep=sleep,
                               blocking=blocking, blocking_timeout=blocking_timeout,
                               thread_local=thread_local)
