"""ServiceCore: what the sync and async services share: construction (options, the
location's runtime, the near cache) and their read-only properties.

The operations live in ``_ops`` and take the ``OpContext`` built here once per service;
``CacheService`` and ``AsyncCacheService`` drive them (``Target.run`` / ``Target.arun``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from cache_service import registry
from cache_service._near.store import NearCache, NearStore, near_config
from cache_service._ops.context import TTL, OpContext
from cache_service._runtime.target import Target
from cache_service._runtime.targets import get_target
from cache_service.codec import PLAIN_CODECS, Codec
from cache_service.codecs import PipelineCodec, build_codec
from cache_service.config import (
    CONNECTIONS,
    Location,
    TargetOptions,
    resolve_location,
    ttl_seconds,
)
from cache_service.errors import ConfigurationError
from cache_service.keys import KeySpace
from cache_service.stats import ServiceCounters
from cache_service.unconfigured import unconfigured

__all__ = ["CONNECTION_ENV", "DEFAULT_MAX_VALUE_BYTES", "TTL", "ServiceCore"]

log = logging.getLogger("cache_service")
CONNECTION_ENV = "CACHE_SERVICE_CONNECTION"

DEFAULT_MAX_VALUE_BYTES = 1024 * 1024


class ServiceCore:
    """Construction and properties shared by the sync and async services; ``_ctx`` is what
    their operations work with."""

    def __init__(
        self,
        prefix: str,
        host: str | None = None,
        port: int | None = None,
        default_ttl: int | float | timedelta = 300,
        *,
        url: str | None = None,
        db: int | None = None,
        username: str | None = None,
        password: str | None = None,
        ssl: bool | None = None,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        sentinels: list[tuple[str, int]] | None = None,
        service_name: str | None = None,
        sentinel_password: str | None = None,
        cluster: bool = False,
        read_from_replicas: bool = False,
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        max_connections: int | None = None,
        max_memory_entries: int = 10_000,
        max_memory_bytes: int = 64 * 1024 * 1024,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        breaker_min_backoff: float = 0.5,
        breaker_max_backoff: float = 1.5,
        journal_max_entries: int = 10_000,
        late_write_guard: float = 10.0,
        fallback: str = "host",
        connection: str | None = None,
        state_dir: str | os.PathLike[str] | bool | None = None,
        codec: Codec | None = None,
        serializer: str | None = None,
        compression: str | None = None,
        compress_min_bytes: int = 1024,
        compression_level: int | None = None,
        encryption_keys: str | bytes | list[str | bytes] | None = None,
        encryption_keys_env: str | None = None,
        near_cache: bool | NearCache = False,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
        _defer_location_error: bool = False,
    ) -> None:
        self._keys = KeySpace(prefix)
        default_seconds = ttl_seconds(default_ttl, "default_ttl")
        if isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int) \
                or max_value_bytes <= 0:
            raise ConfigurationError(f"max_value_bytes must be a positive int, got "
                                     f"{max_value_bytes!r}")
        # serializer -> compression -> encryption: a PipelineCodec when any stage is asked
        self._codec: Codec = build_codec(
            codec, serializer=serializer, compression=compression,
            compress_min_bytes=compress_min_bytes, compression_level=compression_level,
            encryption_keys=encryption_keys, encryption_keys_env=encryption_keys_env,
            max_bytes=max_value_bytes)
        deferred: Target | None = None
        try:
            self._location: Location = resolve_location(
                url=url, host=host, port=port, db=db, username=username, password=password,
                ssl=ssl, ssl_ca_certs=ssl_ca_certs, ssl_certfile=ssl_certfile,
                ssl_keyfile=ssl_keyfile, sentinels=sentinels, service_name=service_name,
                sentinel_password=sentinel_password, cluster=cluster,
                read_from_replicas=read_from_replicas,
            )
        except ConfigurationError as exc:
            if not _defer_location_error:
                raise
            # a ready-made instance (bad REDIS_URL): importing must not raise, every use does
            self._location, deferred = unconfigured(exc)
        # (an unconfigured location raises on every use: it has no kind to ask)
        kind = "memory" if deferred is not None else self._location.kind
        connection = _connection(connection, kind, _defer_location_error)
        options = TargetOptions(
            socket_timeout=socket_timeout, connect_timeout=connect_timeout,
            max_connections=max_connections, max_memory_entries=max_memory_entries,
            max_memory_bytes=max_memory_bytes, breaker_min_backoff=breaker_min_backoff,
            breaker_max_backoff=breaker_max_backoff, journal_max_entries=journal_max_entries,
            late_write_guard=late_write_guard, fallback=fallback, state_dir=state_dir,
            connection=connection,
        )
        self._target: Target = deferred if deferred is not None else get_target(
            self._location, options, clock or time.monotonic)
        self._counters = ServiceCounters()
        near = near_config(near_cache)
        # the near cache: hits with no I/O (a memory:// service has nothing to be near to)
        self._near: NearStore | None = None
        if near is not None and self._location.kind != "memory" and deferred is None:
            self._near = self._target.enable_near(near, self._keys.head)
        # Freshness of stale-while-revalidate values is read by every host: wall time, never
        # ``clock`` (the memory store's, monotonic and per host).
        self._ctx = OpContext(
            keys=self._keys, head=self._keys.head, codec=self._codec,
            plain=type(self._codec) in PLAIN_CODECS or type(self._codec) is PipelineCodec,
            default_ttl=default_seconds, max_value_bytes=max_value_bytes,
            counters=self._counters, location=self._location, target=self._target,
            near=self._near, wall=wall_clock or time.time,
            opener=self._codec.open_payload if isinstance(self._codec, PipelineCodec) else None)
        # a ready-made instance (api_cache...): exporters show it once it counted something
        self._ready_made = _defer_location_error
        registry.add(self)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(prefix={self.prefix!r}, "
                f"location={self._location.describe()!r}, default_ttl={self._ctx.default_ttl:g})")

    @property
    def prefix(self) -> str:
        """This service's namespace."""
        return self._keys.prefix

    @property
    def default_ttl(self) -> float:
        """Seconds a value lives when ``set`` gets no ``ttl``."""
        return self._ctx.default_ttl

    @property
    def location(self) -> str:
        """Where Redis is, without secrets (e.g. ``redis://localhost:6379/0``)."""
        return self._location.describe()

    def full_key(self, key: str) -> str:
        """The Redis key that ``key`` is stored under."""
        return self._keys.full(key)

    def _stats(self) -> dict[str, Any]:
        found = {"prefix": self.prefix, **self._counters.snapshot(),
                 "target": self._target.snapshot()}
        if type(self._codec) is PipelineCodec and self._codec.keyring is not None:
            found["codec"] = self._codec.stats()  # what encryption refused
        return found


# The location kinds redis-py's client may serve (``connection="redis-py"``).
_REDIS_PY_KINDS = ("standalone", "memory")
_warned: set[str] = set()


def _connection(given: str | None, kind: str, ready_made: bool) -> str:
    """How the target talks to Redis: ``given``, else ``$CACHE_SERVICE_CONNECTION``, else
    our own layer (``"wire"``). redis-py's client serves standalone locations only: asked
    for by name with a Sentinel or Cluster location it is an error; asked for by the
    environment, those use ours (warned once)."""
    if given is not None:
        if given == "redis-py" and kind not in _REDIS_PY_KINDS:
            raise ConfigurationError(
                f"connection='redis-py' works with a standalone Redis only (redis://, "
                f"rediss://, unix://); a {kind} location uses connection='wire' (the "
                f"default): leave connection out")
        return given
    chosen = os.environ.get(CONNECTION_ENV) or "wire"
    if chosen not in CONNECTIONS:
        if ready_made:  # importing never fails because of the environment
            log.warning("%s=%r is not one of %s; using wire",
                        CONNECTION_ENV, chosen, ", ".join(CONNECTIONS))
            return "wire"
        raise ConfigurationError(f"{CONNECTION_ENV} must be one of {', '.join(CONNECTIONS)}, "
                                 f"got {chosen!r}")
    if chosen == "redis-py" and kind not in _REDIS_PY_KINDS:
        if kind not in _warned:
            _warned.add(kind)
            log.warning("%s=redis-py applies to standalone Redis only; %s "
                        "locations use wire", CONNECTION_ENV, kind)
        return "wire"
    return chosen
