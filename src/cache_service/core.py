"""Everything a service does, written once as generator operations (no I/O here).

Each operation yields Redis requests and receives replies from a driver (``Target.run`` for
``CacheService``, ``Target.arun`` for ``AsyncCacheService``), so the rules for keys, TTLs,
encoding, the breaker, the outage journal and the memory store exist exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from .breaker import Gate
from .codec import STAMPER, Codec, CorruptPayload, JsonCodec, pack, stamp_of, unpack
from .config import Location, TargetOptions, resolve_location, ttl_seconds
from .errors import ConfigurationError
from .keys import KeySpace
from .stats import ServiceCounters
from .target import Op, Target, Unavailable, WrongType, get_target

__all__ = ["MISSING", "TTL", "ServiceCore"]

log = logging.getLogger("cache_service")
R = TypeVar("R")
TTL = int | float | timedelta | None
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024


def _one(request: tuple[Any, ...]) -> Op[Any]:
    return (yield request)


class ServiceCore:
    """Configuration and operations shared by the sync and async services."""

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
        codec: Codec | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._keys = KeySpace(prefix)
        self._default_ttl = ttl_seconds(default_ttl, "default_ttl")
        if isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int) \
                or max_value_bytes <= 0:
            raise ConfigurationError(f"max_value_bytes must be a positive int, got "
                                     f"{max_value_bytes!r}")
        self._max_value_bytes = max_value_bytes
        self._codec: Codec = codec if codec is not None else JsonCodec()
        self._location: Location = resolve_location(
            url=url, host=host, port=port, db=db, username=username, password=password,
            ssl=ssl, ssl_ca_certs=ssl_ca_certs, ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile, sentinels=sentinels, service_name=service_name,
            sentinel_password=sentinel_password, cluster=cluster,
            read_from_replicas=read_from_replicas,
        )
        options = TargetOptions(
            socket_timeout=socket_timeout, connect_timeout=connect_timeout,
            max_connections=max_connections, max_memory_entries=max_memory_entries,
            max_memory_bytes=max_memory_bytes, breaker_min_backoff=breaker_min_backoff,
            breaker_max_backoff=breaker_max_backoff, journal_max_entries=journal_max_entries,
            late_write_guard=late_write_guard,
        )
        self._target: Target = get_target(self._location, options, clock or time.monotonic)
        self._counters = ServiceCounters()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(prefix={self.prefix!r}, "
                f"location={self._location.describe()!r}, default_ttl={self._default_ttl:g})")

    @property
    def prefix(self) -> str:
        """This service's namespace."""
        return self._keys.prefix

    @property
    def default_ttl(self) -> float:
        """Seconds a value lives when ``set`` gets no ``ttl``."""
        return self._default_ttl

    @property
    def location(self) -> str:
        """Where Redis is, without secrets (e.g. ``redis://localhost:6379/0``)."""
        return self._location.describe()

    def full_key(self, key: str) -> str:
        """The Redis key that ``key`` is stored under."""
        return self._keys.full(key)

    def _stats(self) -> dict[str, Any]:
        return {"prefix": self.prefix, **self._counters.snapshot(),
                "target": self._target.snapshot()}

    # -- operations -------------------------------------------------------------------------
    def _get(self, key: str, default: Any) -> Op[Any]:
        k = self._keys.full(key)
        t = self._target
        gate = t.gate()
        if gate is Gate.PROBE:
            gate = yield from t.recover()
        if gate is Gate.REDIS:
            try:
                raw = yield ("get", k)
            except Unavailable:
                pass
            except WrongType:
                return (yield from self._discard(k, "holds a non-string Redis value", default))
            else:
                if raw is None:
                    self._counters.misses += 1
                    return default
                try:
                    value = unpack(self._codec, raw, k)
                except CorruptPayload as exc:
                    if not exc.remove:
                        self._counters.misses += 1
                        return default
                    return (yield from self._discard(k, str(exc), default))
                journal = t.journal
                if journal.guard_until and STAMPER.mine(stamp := stamp_of(raw)) and \
                        journal.invalidated_after(k, stamp, t.clock()):
                    t.counters.stale_blocked += 1
                    return (yield from self._discard(k, None, default))
                self._counters.hits += 1
                return value
        t.counters.memory_reads += 1
        raw = t.memory.get(k)
        if raw is not None:
            try:
                value = unpack(self._codec, raw, k)
            except CorruptPayload:  # written by a service with another codec
                pass
            else:
                self._counters.hits += 1
                return value
        self._counters.misses += 1
        return default

    def _discard(self, k: str, why: str | None, default: Any) -> Op[Any]:
        """A payload we cannot serve: log it (unless a known late write), remove it, miss."""
        self._counters.misses += 1
        if why is not None:
            self._target.counters.corrupt += 1
            log.warning("cache_service: discarding %r: %s", k, why)
        with contextlib.suppress(Unavailable):
            yield ("unlink", k)
        return default

    def _set(self, key: str, value: Any, ttl: TTL) -> Op[None]:
        k = self._keys.full(key)
        seconds = self._default_ttl if ttl is None else ttl_seconds(ttl)
        payload = pack(self._codec, value, k, self._max_value_bytes, STAMPER.next())
        self._counters.sets += 1
        px = max(1, math.ceil(seconds * 1000))

        def local() -> None:
            self._target.counters.memory_writes += 1
            self._target.memory.set(k, payload, seconds)

        yield from self._write(lambda: _one(("set", k, payload, None, px)), local, keys=[k])

    def _delete(self, keys: tuple[str, ...]) -> Op[int]:
        ks = [self._keys.full(k) for k in keys]
        if not ks:
            return 0
        self._counters.deletes += len(ks)
        removed: int = yield from self._write(
            lambda: _one(("unlink", *ks)), lambda: self._target.memory_invalidate(ks), keys=ks)
        return removed

    def _invalidate(self, pattern: str) -> Op[int]:
        self._counters.invalidations += 1
        t = self._target
        return (yield from self._write(
            lambda: t.scan_unlink(pattern), lambda: t.memory_invalidate(pattern=pattern),
            pattern=pattern))

    def _invalidate_pattern(self, glob: str) -> Op[int]:
        return self._invalidate(self._keys.pattern(glob))

    def _clear_all(self) -> Op[int]:
        return self._invalidate(self._keys.all_pattern)

    def _write(self, remote: Callable[[], Op[R]], local: Callable[[], R],
               keys: list[str] | None = None, pattern: str | None = None) -> Op[R]:
        """Apply a write on Redis, or on memory with a journal entry while Redis is out."""
        t = self._target
        while True:
            gate = t.gate(writing=True)
            if gate is Gate.PROBE:
                gate = yield from t.recover()
            if gate is Gate.REDIS:
                try:
                    result = yield from remote()
                except Unavailable:
                    pass
                else:
                    if t.breaker.is_open:  # draining: readers are still on memory
                        t.memory_invalidate(keys, pattern)
                    return result
            if t.record_offline(keys, pattern, STAMPER.next()):
                return local()

    def _is_available(self) -> Op[bool]:
        t = self._target
        gate = t.gate()
        if gate is Gate.PROBE:
            gate = yield from t.recover()
        if gate is not Gate.REDIS:
            return False
        try:
            yield ("ping",)
        except Unavailable:
            return False
        return True
