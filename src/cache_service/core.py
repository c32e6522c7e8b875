"""Everything a service does, written once as generator operations (no I/O here).

Each operation yields Redis requests and receives replies from a driver (``Target.run`` for
``CacheService``, ``Target.arun`` for ``AsyncCacheService``), so the rules for keys, TTLs,
encoding, the breaker, the outage journal and the memory store exist exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from orjson import JSONDecodeError, loads

from . import registry
from ._ops.protocol import Op, ReplyError, Request, Unavailable, WrongType
from ._ops.requests import Get, MGet, Script, Set
from ._runtime.targets import get_target
from .breaker import Gate
from .codec import (
    HEADER_SIZE,
    MAGIC,
    PLAIN_CODECS,
    PLAIN_HEADER,
    STAMPER,
    Codec,
    CorruptPayload,
    JsonCodec,
    pack,
    stamp_of,
    unpack,
)
from .config import Location, TargetOptions, resolve_location, ttl_seconds
from .copies import IMMUTABLE as _IMMUTABLE
from .copies import Kept as _Kept
from .copies import copy_plan as _copy_plan
from .errors import ConfigurationError
from .host import GEN
from .keys import KeySpace
from .loading import (
    SWR_MARK,
    Stale,
    jittered,
)
from .memory import NO_VALUE
from .near import MISS, NearCache, NearStore, near_config
from .notices import unservable
from .scripts import DROP_IF_SAME, GET_WITH_PTTL, SET_UNLESS_FOREIGN
from .stats import ServiceCounters, add
from .tags import (
    MAX_INVALIDATE,
    TOKENS,
    Tagged,
    drop_memory_tokens,
    is_tagged,
    memory_tokens,
    open_tagged,
    stored_tokens,
    tag_key,
    tag_ttl_ms,
    validate_tags,
    wrap,
)
from .tags import new_token as new_tag_token
from .target import Target
from .unconfigured import unconfigured

__all__ = ["MISSING", "TTL", "UNCOUNTED", "Discard", "ServiceCore"]

log = logging.getLogger("cache_service")
R = TypeVar("R")
TTL = int | float | timedelta | None
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
UNCOUNTED = _UNCOUNTED = ServiceCounters()  # internal re-reads count nowhere


# Values the memory store keeps decoded beside their payload, up to this payload size.
_KEEP_DECODED = 1024


def _kept(codec: Codec, value: Any, payload: bytes, k: str) -> Any:
    """What the memory store keeps decoded beside ``payload`` (a value up to
    ``_KEEP_DECODED`` bytes of payload), so that a memory ``get`` needs no decode: an
    immutable value as it is; a dict or list of them (nested as you like) decoded from the
    payload — never the caller's object, which they may mutate after ``set`` — as a
    ``_Kept`` that ``get`` copies; otherwise ``NO_VALUE``."""
    t = type(value)
    if len(payload) > _KEEP_DECODED:
        return NO_VALUE
    if t in _IMMUTABLE:
        return value
    if t is not dict and t is not list:
        return NO_VALUE
    decoded = unpack(codec, payload, k)
    if type(decoded) is not dict and type(decoded) is not list:
        return NO_VALUE
    plan = _copy_plan(decoded)
    return NO_VALUE if plan is None else _Kept(decoded, plan)


class Discard:
    """A GET reply that must not be served and must be removed; ``why`` is logged (None: a
    known late write of ours, not worth a warning)."""

    __slots__ = ("why",)

    def __init__(self, why: str | None) -> None:
        self.why = why


def _one(request: Request) -> Op[Any]:
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
        fallback: str = "host",
        state_dir: str | os.PathLike[str] | bool | None = None,
        codec: Codec | None = None,
        near_cache: bool | NearCache = False,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
        _defer_location_error: bool = False,
    ) -> None:
        self._keys = KeySpace(prefix)
        self._head = self._keys.head  # for the get fast path
        self._default_ttl = ttl_seconds(default_ttl, "default_ttl")
        if isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int) \
                or max_value_bytes <= 0:
            raise ConfigurationError(f"max_value_bytes must be a positive int, got "
                                     f"{max_value_bytes!r}")
        self._max_value_bytes = max_value_bytes
        self._codec: Codec = codec if codec is not None else JsonCodec()
        self._plain = type(self._codec) in PLAIN_CODECS  # plain JSON payloads: orjson.loads
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
        options = TargetOptions(
            socket_timeout=socket_timeout, connect_timeout=connect_timeout,
            max_connections=max_connections, max_memory_entries=max_memory_entries,
            max_memory_bytes=max_memory_bytes, breaker_min_backoff=breaker_min_backoff,
            breaker_max_backoff=breaker_max_backoff, journal_max_entries=journal_max_entries,
            late_write_guard=late_write_guard, fallback=fallback, state_dir=state_dir,
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
        self._wall: Callable[[], float] = wall_clock or time.time
        # a ready-made instance (api_cache...): exporters show it once it counted something
        self._ready_made = _defer_location_error
        registry.add(self)

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
    def _get(self, key: str, default: Any, counters: ServiceCounters | None = None,
             stale: bool = False, looked: bool = False) -> Op[Any]:
        """The value at ``key`` or ``default``; with ``stale``, a value kept past its
        freshness for stale-while-revalidate comes back as a ``Stale``. ``looked``: the near
        cache was already asked."""
        c = self._counters if counters is None else counters
        k = self._keys.full(key)
        t = self._target
        if t.gate() is Gate.REDIS:
            near = self._near
            token = None
            if near is not None and not stale:  # stale reads are SWR envelopes: never near
                if not looked:
                    found = near.lookup(k)
                    if found is not MISS:
                        next(c.hits)
                        return found
                next(near.misses)
                token = near.begin(k)
                if token is None:
                    t.tracker.ensure_running()  # type: ignore[union-attr]
            try:
                if token is None:
                    raw = yield Get(k)
                else:
                    raw, ttl_ms = yield Script(GET_WITH_PTTL, (k,), ())
            except ReplyError:  # refused (BUSY, LOADING, NOPERM...): a miss, Redis stays
                next(c.misses)
                return default
            except Unavailable:
                pass
            except WrongType:  # a foreign key of another Redis type: a miss, left alone
                self._foreign(k, "a Redis value of another type")
                next(c.misses)
                return default
            else:
                keep = None if token is None else partial(
                    near.store, k, token, ttl_ms=ttl_ms, decode=self._decoder(k))  # type: ignore[union-attr]
                result = self._from_redis(k, raw, default, stale, c, keep=keep)
                if type(result) is Discard:
                    return (yield from self._discard(k, result.why, default, c))
                if type(result) is Tagged:
                    return (yield from self._tagged(result, default, stale, c))
                return result
            finally:
                if token is not None:
                    near.abandon(k, token)  # type: ignore[union-attr]
        return self._from_memory(k, default, stale, c)

    def _reply(self, k: str, raw: bytes | None, default: Any) -> Any:
        """What a GET reply means to the get fast paths: the value or ``default`` (counted),
        or a ``Discard``/``Tagged`` for the caller's driver to finish. A plain JSON hit is
        decoded here with no frame per step (each costs ~1% of a loopback hit)."""
        if self._plain and raw is not None and raw[:3] == PLAIN_HEADER \
                and not self._target.guard.until:
            try:
                value = loads(raw[HEADER_SIZE:])
            except JSONDecodeError:  # the general rules below say what it is
                pass
            else:
                if type(value) is list:  # perhaps a stale-while-revalidate envelope
                    return self._opened(value, raw, default, False, self._counters)
                next(self._counters.hits)
                return value
        return self._from_redis(k, raw, default, False, self._counters)

    def _near_hit(self, key: str) -> Any:
        """``key``'s near-cache value (a fresh copy) while Redis is in use, else MISS."""
        t = self._target
        if t._page[GEN] == t._closed_gen:
            value = self._near.lookup(self._keys.full(key))  # type: ignore[union-attr]
            if value is not MISS:
                next(self._counters.hits)
            return value
        return MISS

    def _decoder(self, k: str) -> Callable[[bytes], Any]:
        codec = self._codec
        return lambda raw: unpack(codec, raw, k)

    def _from_redis(self, k: str, raw: bytes | None, default: Any, stale: bool,
                    c: ServiceCounters, *, keep: Callable[[Any, bytes], None] | None = None
                    ) -> Any:
        """What a GET reply means: the value, ``default`` on a miss (a foreign string is one,
        left alone), or a ``Discard`` when the payload must be removed (corrupt, or a late
        write of ours). No I/O. ``keep(value, raw)`` is told a plain value served (the near
        cache's fill)."""
        if raw is None:
            next(c.misses)
            return default
        try:
            value = unpack(self._codec, raw, k)
        except CorruptPayload as exc:
            if is_tagged(raw):  # the plain codec refuses it: untagged reads pay nothing
                return open_tagged(k, raw) or Discard("malformed tag section")
            if exc.remove:
                return Discard(str(exc))
            if exc.foreign:
                self._foreign(k, str(exc))
            next(c.misses)
            return default
        t = self._target
        if t.guard.until and t.guard_blocks(k, stamp_of(raw)):
            return Discard(None)
        if type(value) is list:
            return self._opened(value, raw, default, stale, c, keep=keep)
        if keep is not None:
            keep(value, raw)
        next(c.hits)
        return value

    def _from_memory(self, k: str, default: Any, stale: bool, c: ServiceCounters) -> Any:
        """The memory store's value for ``k`` (a fresh copy), or ``default``. No I/O."""
        t = self._target
        next(t.counters.memory_reads)
        found = t.fallback.lookup(k)
        if found is not None:
            raw, kept = found
            if kept is not NO_VALUE:
                if type(kept) is _Kept:  # a dict or list: the caller gets fresh containers
                    kept = kept.fresh()
                    if type(kept) is list:
                        return self._opened(kept, raw, default, stale, c)
                next(c.hits)
                return kept
            try:
                value = unpack(self._codec, raw, k)
            except CorruptPayload:  # written by a service with another codec, or tagged
                tagged = open_tagged(k, raw) if is_tagged(raw) else None
                if tagged is not None and tagged.current(
                        stored_tokens(t.fallback, self._tag_keys(tagged.tags))):
                    with contextlib.suppress(CorruptPayload):
                        value = unpack(self._codec, tagged.plain, k)
                        if type(value) is list:
                            return self._opened(value, tagged.plain, default, stale, c)
                        next(c.hits)
                        return value
            else:
                if type(value) is list:
                    return self._opened(value, raw, default, stale, c)
                next(c.hits)
                return value
        next(c.misses)
        return default

    def _opened(self, value: list[Any], raw: bytes, default: Any, stale: bool,
                c: ServiceCounters, *, keep: Callable[[Any, bytes], None] | None = None
                ) -> Any:
        """A decoded list: unwrap it if it is a stale-while-revalidate envelope of ours
        (never kept near: its freshness is not Redis' TTL)."""
        if len(value) == 4 and value[0] == SWR_MARK and value[1] == stamp_of(raw):
            if type(value[2]) is not float and type(value[2]) is not int:  # forged: a miss
                next(self._target.counters.corrupt)
                next(c.misses)
                return default
            if self._wall() >= value[2]:
                next(c.misses)
                return Stale(value[3], value[2]) if stale else default
            value = value[3]
        elif keep is not None:
            keep(value, raw)
        next(c.hits)
        return value

    def _discard(self, k: str, why: str | None, default: Any,
                 c: ServiceCounters | None = None) -> Op[Any]:
        """A payload we cannot serve: log it (unless a known late write), remove it, miss."""
        next((self._counters if c is None else c).misses)
        if why is not None:
            next(self._target.counters.corrupt)
            unservable(self._location.describe(), "corrupt", k, why)
        with contextlib.suppress(Unavailable):
            yield from self._target.unlink_keys([k])
        return default

    def _foreign(self, k: str, why: str) -> None:
        """Count (as ``corrupt``) and say, rate-limited, that ``k`` holds a value not ours."""
        next(self._target.counters.corrupt)
        unservable(self._location.describe(), "foreign", k, why)

    def _set(self, key: str, value: Any, ttl: TTL, keep_stale: float = 0.0,
             jitter: float = 0.0, *, tags: object = (), polite: bool = False) -> Op[None]:
        """Store ``value``; ``jitter`` shortens the TTL by up to that fraction at random;
        ``keep_stale`` keeps it that much longer wrapped with its freshness (get_or_set SWR);
        ``tags``: see ``tags.py``; ``polite``: never over a foreign key (get_or_set's fill)."""
        tagged = validate_tags(tags) if tags else ()
        k, payload, seconds, value = self._encoded(key, value, ttl, keep_stale, jitter)
        px = max(1, math.ceil(seconds * 1000))
        if tagged:
            yield from self._set_tagged(k, payload, seconds, px, tagged, polite=polite)
            return
        yield from self._store(k, payload, seconds, value, polite=polite)

    def _encoded(self, key: str, value: Any, ttl: TTL, keep_stale: float = 0.0,
                 jitter: float = 0.0) -> tuple[str, bytes, float, Any]:
        """Validate and encode a set (raises before anything is written) and count it:
        ``(redis key, payload, seconds, the value as stored)``."""
        k = self._keys.full(key)
        seconds = self._default_ttl if ttl is None else ttl_seconds(ttl)
        if jitter:
            seconds = jittered(seconds, jitter)
        stamp = STAMPER.next()
        if keep_stale:
            value = [SWR_MARK, stamp, self._wall() + seconds, value]
            seconds += keep_stale
        payload = pack(self._codec, value, k, self._max_value_bytes, stamp)
        next(self._counters.sets)
        return k, payload, seconds, value

    def _store(self, k: str, payload: bytes, seconds: float, value: Any, *,
               polite: bool = False) -> Op[None]:
        """Write an encoded, untagged value: on Redis, or on the fallback while it is out
        (``polite``: on Redis only if no foreign key is there)."""
        px = max(1, math.ceil(seconds * 1000))
        request: Request = Script(SET_UNLESS_FOREIGN, (k,), (payload, px, MAGIC)) if polite \
            else Set(k, payload, px)

        def local() -> None:
            kept = _kept(self._codec, value, payload, k)
            next(self._target.counters.memory_writes)
            self._target.fallback.set(k, payload, seconds, kept)

        yield from self._write(lambda: _one(request), local, keys=[k], refused=None,
                               overwrites=True)

    def _delete(self, keys: tuple[str, ...]) -> Op[int]:
        ks = [self._keys.full(k) for k in keys]
        if not ks:
            return 0
        add(self._counters.deletes, len(ks))
        removed: int = yield from self._write(
            lambda: self._target.unlink_keys(ks), lambda: self._target.fallback_invalidate(ks),
            keys=ks, refused=0, removes=True)
        return removed

    def _invalidate(self, pattern: str) -> Op[int]:
        next(self._counters.invalidations)
        t = self._target
        return (yield from self._write(
            lambda: t.scan_unlink(pattern), lambda: t.fallback_invalidate(pattern=pattern),
            pattern=pattern, refused=0, removes=True))

    def _invalidate_pattern(self, glob: str) -> Op[int]:
        return self._invalidate(self._keys.pattern(glob))

    def _clear_all(self) -> Op[int]:
        return self._invalidate(self._keys.all_pattern)

    def _write(self, remote: Callable[[], Op[R]], local: Callable[[], R],
               keys: list[str] | None = None, pattern: str | None = None, *,
               refused: R, overwrites: bool = False, removes: bool = False) -> Op[R]:
        """Apply a write on Redis, or on memory with a journal entry while Redis is out.

        When Redis refuses it with an error reply (OOM, NOPERM, BUSY...) the call returns
        ``refused``, nothing is journaled and the breaker stays; a write that ``overwrites``
        ``keys`` drops their old values (UNLINK works under OOM), so none is served; when
        that UNLINK is refused too for a state that ends by itself (BUSY, LOADING), the write
        is journaled as in an outage. A removal (``removes``) refused by any reply but a
        denial (NOPERM: named in ``stats()``) is journaled likewise: what it removes must not
        be served once Redis accepts writes again."""
        t = self._target
        while True:
            if t.gate(writing=True) is Gate.REDIS:
                reached = True
                try:
                    result = yield from remote()
                except ReplyError as error:
                    result = refused
                    if overwrites:  # False: Redis went away meanwhile, journal it
                        reached = yield from self._drop_refused(keys or [])
                    elif removes and error.kind == "reply":
                        t.refused_twice(error)
                        reached = False
                except Unavailable:
                    reached = False
                if reached:
                    if t.breaker.is_open:  # draining: readers are still on memory
                        t.fallback_invalidate(keys, pattern)
                    t.written(keys, pattern)
                    return result
            applied = t.offline(keys, pattern, STAMPER.next(), local)
            if applied is not None:
                t.written(keys, pattern)
                return applied[0]

    def _drop_refused(self, keys: list[str]) -> Op[bool]:
        """UNLINK the keys of a write Redis refused; False when the write must be journaled
        instead: Redis became unreachable, or refused the UNLINK too for a state that ends
        by itself (BUSY, LOADING). A refusal only a setting fixes (NOPERM) is named in
        ``stats()``; an unencodable key has no old value."""
        try:
            yield from self._target.unlink_keys(keys)
        except ReplyError as again:
            if again.kind == "reply":
                self._target.refused_twice(again)
                return False
        except Unavailable:
            return False
        return True

    def _is_available(self) -> Op[bool]:
        t = self._target
        if t.gate() is not Gate.REDIS:
            return False
        try:
            yield t.ping_request
        except ReplyError:  # reachable, though it refuses PING (NOPERM, LOADING...)
            return True
        except Unavailable:
            return False
        return True

    # -- tags (the rules live in tags.py) ----------------------------------------------------
    def _tagged(self, tagged: Tagged, default: Any, stale: bool, c: ServiceCounters) -> Op[Any]:
        """Serve a tagged value read from Redis if its tags still hold its tokens (one MGET
        of tag keys, all in one cluster slot); a dead one is removed (if unchanged)."""
        k = tagged.key
        try:
            stored = yield MGet(tuple(self._tag_keys(tagged.tags)))
        except Unavailable:
            return self._from_memory(k, default, stale, c)
        if not tagged.current(stored):
            next(c.misses)
            with contextlib.suppress(Unavailable):
                yield Script(DROP_IF_SAME, (k,), (tagged.raw,))
            return default
        result = self._from_redis(k, tagged.plain, default, stale, c)
        if type(result) is Discard:
            return (yield from self._discard(k, result.why, default, c))
        return result

    def _tag_keys(self, tags: tuple[str, ...] | list[str]) -> list[str]:
        prefix = self._keys.prefix
        return [tag_key(prefix, t) for t in tags]

    def _tag_tokens(self, keys: list[str], px: int) -> Op[list[bytes]]:
        """The current tokens of tag ``keys`` on Redis, creating missing ones and keeping
        each at least ``px`` ms (plus a margin): one script on the prefix's tag slot."""
        tokens: list[bytes] = yield Script(TOKENS, tuple(keys),
                                           (tag_ttl_ms(px), *(new_tag_token() for _ in keys)))
        return tokens

    def _set_tagged(self, k: str, payload: bytes, seconds: float, px: int,
                    tags: tuple[str, ...], *, polite: bool = False) -> Op[None]:
        """Store a tagged value: read (or create) its tags' tokens, then SET it with them."""
        tag_keys = self._tag_keys(tags)
        t = self._target

        def remote() -> Op[None]:
            tokens = yield from self._tag_tokens(tag_keys, px)
            stored = wrap(payload, tags, tokens)
            yield (Script(SET_UNLESS_FOREIGN, (k,), (stored, px, MAGIC)) if polite
                   else Set(k, stored, px))

        def local() -> None:
            next(t.counters.memory_writes)
            t.fallback.set(k, wrap(payload, tags, memory_tokens(t.fallback, tag_keys, seconds)),
                         seconds)

        yield from self._write(remote, local, keys=[k], refused=None, overwrites=True)

    def _invalidate_tags(self, tags: tuple[object, ...]) -> Op[None]:
        """Every value written with one of ``tags`` is a miss from now on: their tag keys
        are dropped (journaled while Redis is out, like any delete)."""
        keys = self._tag_keys(validate_tags(tags, MAX_INVALIDATE))
        if not keys:
            return
        next(self._counters.invalidations)
        t = self._target
        yield from self._write(lambda: t.unlink_keys(keys),
                               lambda: drop_memory_tokens(lambda: t.fallback_invalidate(keys)),
                               keys=keys, refused=None, removes=True)
