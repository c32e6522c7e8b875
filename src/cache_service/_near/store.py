"""The near cache: a process's own bounded copy of hot values, served with no I/O.

Pure bookkeeping (no I/O): ``tracking.Tracker`` keeps it coherent with Redis' server-assisted
invalidation and decides how long it may be trusted (``valid_until``); the services fill it
from Redis replies and read it first.

Three rules keep it from serving stale data:

- **Fills lose to invalidations.** ``begin(key)`` hands out a token before the read is sent;
  an invalidation (or a flush) of that key withdraws it, and ``store`` keeps the reply only
  while its token is still the key's. A reply produced before a concurrent write but read
  after that write's invalidation is therefore dropped, not stored (the "placeholder" method
  of Redis' client-side caching guide).
- **Trust expires.** Every hit checks ``valid_until``, which only the tracker moves forward,
  to the time of its last answered heartbeat plus ``WINDOW``. A lost, hung or starved
  listener stops the hits within that bound, with no help from its thread.
- **Losing coherence empties it** (``lose``): entries and tokens go, and fills are refused
  until the tracker has re-subscribed.

Eviction is second-chance (CLOCK): a hit only sets the entry's flag, with no lock, so reads
scale across threads; eviction, under the lock, gives flagged entries one more round. The
entry and byte bounds are exact.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from time import monotonic
from typing import Any

from cache_service._host.state import NEAR_WRITES, PAGE_BYTES, key_slot
from cache_service.copies import IMMUTABLE, Kept, copy_plan
from cache_service.errors import ConfigurationError
from cache_service.forking import at_fork_child
from cache_service.redis_glob import Glob
from cache_service.stats import value as counted

__all__ = ["MISS", "WINDOW", "NearCache", "NearStore", "near_config"]

MISS: Any = type("NearMiss", (), {"__repr__": lambda self: "MISS"})()
WINDOW = 0.5  # seconds a heartbeat's answer keeps the entries trusted
_ENTRY_OVERHEAD = 120  # rough bytes per entry beyond key and payload
_COPIED = 16384  # larger dicts and lists are decoded on each hit (their plan costs a walk)
# entry fields: [deadline (monotonic), object, copier (None: hand out as is), size, flagged,
# page slot of its key, that slot's value and NEAR_WRITES' when its fill began]
_DEADLINE, _OBJECT, _COPIER, _SIZE, _FLAG, _SLOT, _SEEN, _GEN = range(8)


@dataclass(frozen=True)
class NearCache:
    """Bounds of a near cache (``near_cache=NearCache(...)``; ``near_cache=True`` is the
    default one): ``max_entries`` and ``max_bytes`` per process; ``max_ttl`` caps how long an
    entry is kept (seconds; None: as long as Redis keeps the key)."""

    max_entries: int = 10_000
    max_bytes: int = 16 * 1024 * 1024
    max_ttl: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_entries", "max_bytes"):
            bound = getattr(self, name)
            if isinstance(bound, bool) or not isinstance(bound, int) or bound <= 0:
                raise ConfigurationError(f"NearCache {name} must be a positive int, got {bound!r}")
        ttl = self.max_ttl
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)
                                or not ttl > 0 or ttl == float("inf")):
            raise ConfigurationError(
                f"NearCache max_ttl must be a positive number of seconds or None, got {ttl!r}")


def near_config(value: object) -> NearCache | None:
    """What a ``near_cache=`` argument asks for: None (off), or its bounds."""
    if value is None or value is False:
        return None
    if value is True:
        return NearCache()
    if isinstance(value, NearCache):
        return value
    raise ConfigurationError(
        f"near_cache must be True, False or a NearCache(...), got {value!r}")


def _copier(value: Any, payload: bytes, decode: Callable[[bytes], Any]
            ) -> tuple[Any, Callable[[Any], Any] | None]:
    """How a hit hands out a fresh copy: immutables as they are; a dict or list of them
    (nested as you like, up to ``_COPIED`` bytes of payload) as new containers around the
    shared leaves (``copies.Kept``, holding its own copy: the filling read returns ``value``
    itself to its caller); anything else decoded anew."""
    kind = type(value)
    if kind in IMMUTABLE:
        return value, None
    if (kind is dict or kind is list) and len(payload) <= _COPIED:
        plan = copy_plan(value)
        if plan is not None:
            kept = Kept(value, plan)
            kept.value = kept.fresh()
            return kept, Kept.fresh
    return payload, decode


class NearStore:
    """The near cache of one target in this process."""

    def __init__(self, config: NearCache) -> None:
        self.config = config
        self.entries: dict[str, list[Any]] = {}
        self.valid_until = 0.0  # monotonic time up to which entries may be served
        self.nbytes = 0
        self.hits = itertools.count()
        self.misses = itertools.count()
        self.invalidations = itertools.count()  # keys (or flushes) Redis told us about
        self.flushes = itertools.count()
        self.evictions = itertools.count()
        self._pending: dict[str, tuple[int, int, int]] = {}
        self._lock = threading.Lock()
        # set by the tracker: whether it hears from every primary the data clients use
        self.covers: Callable[[], bool] = _always
        self.help: Callable[[], bool] = _always
        self.drain_due = float("inf")  # when a hit should read the tracker's links itself
        # The host page (set by the target when it attaches): writes by any process of the
        # host move a key's slot there at once (``host.mark_written``).
        self.page: memoryview = memoryview(bytearray(PAGE_BYTES)).cast("q")
        _stores.add(self)

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, key: str) -> Any:
        """The entry's value (a fresh copy) while it and the cache are trusted, else MISS.
        When the tracker's links went unread a while, first read them (``help``)."""
        now = monotonic()
        if now >= self.drain_due and not self.help():
            return MISS
        entry = self.entries.get(key)
        if entry is None or now >= entry[_DEADLINE] or now >= self.valid_until:
            return MISS
        page = self.page
        if page[entry[_SLOT]] != entry[_SEEN] or page[NEAR_WRITES] != entry[_GEN]:
            return MISS  # written since by a process of this host: its push is on its way
        entry[_FLAG] = True
        next(self.hits)
        copier = entry[_COPIER]
        return entry[_OBJECT] if copier is None else copier(entry[_OBJECT])

    def begin(self, key: str) -> tuple[int, int, int] | None:
        """A token for filling ``key`` from a read about to be sent (None: do not fill)."""
        if monotonic() >= self.valid_until:
            return None
        slot = key_slot(key)
        page = self.page
        token = (slot, page[slot], page[NEAR_WRITES])  # a new tuple: its identity is the token
        pending = self._pending
        if len(pending) >= self.config.max_entries:  # fills abandoned by errors: bounded
            with self._lock:
                pending.clear()
        pending[key] = token
        return token

    def store(self, key: str, token: tuple[int, int, int], value: Any, payload: bytes, *,
              ttl_ms: int, decode: Callable[[bytes], Any]) -> None:
        """Keep the reply read with ``token`` for at most ``ttl_ms`` (the key's PTTL), unless
        an invalidation or a flush came in since ``begin``."""
        if ttl_ms <= 0:  # expired meanwhile, or no TTL (not a key we wrote)
            self.abandon(key, token)
            return
        if not self.covers():
            self.abandon(key, token)
            return
        obj, copier = _copier(value, payload, decode)
        size = len(key) + len(payload) + _ENTRY_OVERHEAD
        config = self.config
        seconds = ttl_ms / 1000
        if config.max_ttl is not None and seconds > config.max_ttl:
            seconds = config.max_ttl
        with self._lock:
            if self._pending.get(key) is not token:
                return
            del self._pending[key]
            now = monotonic()
            if now >= self.valid_until or size > config.max_bytes:
                return
            old = self.entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[_SIZE]
            self.entries[key] = [now + seconds, obj, copier, size, False, *token]
            self.nbytes += size
            self._evict()

    def abandon(self, key: str, token: tuple[int, int, int]) -> None:
        """A fill that will not store (its read failed)."""
        if self._pending.get(key) is token:
            with self._lock:
                if self._pending.get(key) is token:
                    del self._pending[key]

    def invalidate(self, keys: Iterable[str]) -> None:
        """Redis (or this process) changed ``keys``: drop them and withdraw their fills."""
        with self._lock:
            pending, entries = self._pending, self.entries
            for key in keys:
                pending.pop(key, None)
                old = entries.pop(key, None)
                if old is not None:
                    self.nbytes -= old[_SIZE]

    def invalidate_matching(self, glob: Glob) -> None:
        """Drop every key ``glob`` matches (this process's own pattern writes)."""
        with self._lock:
            doomed = glob.select(itertools.chain(self.entries, self._pending))
        self.invalidate(doomed)

    def lose(self) -> None:
        """Coherence is lost (or not yet there): empty, and refuse fills until ``trust``."""
        with self._lock:
            self.valid_until = 0.0
            had = self._clear()
        if had:
            next(self.flushes)

    def flush(self) -> None:
        """Redis flushed the database: drop everything (coherence holds)."""
        with self._lock:
            self._clear()
        next(self.flushes)

    def _clear(self) -> bool:
        """Drop every entry and fill (under the lock); whether there were entries."""
        had = bool(self.entries)
        self._pending.clear()
        self.entries.clear()
        self.nbytes = 0
        return had

    def trust(self, until: float) -> None:
        """The tracker vouches for the entries up to ``until`` (monotonic)."""
        self.valid_until = max(self.valid_until, until)

    def snapshot(self) -> dict[str, Any]:
        """Figures for ``stats()``."""
        return {
            "near_hits": counted(self.hits), "near_misses": counted(self.misses),
            "near_invalidations": counted(self.invalidations),
            "near_flushes": counted(self.flushes), "near_evictions": counted(self.evictions),
            "near_entries": len(self.entries), "near_bytes": self.nbytes,
            "near_coherent": monotonic() < self.valid_until,
        }

    def _evict(self) -> None:
        """Second chance, oldest first, until both bounds hold (under the lock)."""
        entries, config = self.entries, self.config
        while len(entries) > config.max_entries or self.nbytes > config.max_bytes:
            key = next(iter(entries))
            entry = entries.pop(key)
            if entry[_FLAG]:
                entry[_FLAG] = False
                entries[key] = entry
                continue
            self.nbytes -= entry[_SIZE]
            next(self.evictions)


def _always() -> bool:
    return True


_stores: weakref.WeakSet[NearStore] = weakref.WeakSet()


def _after_fork() -> None:
    """A forked child inherits no listener: its copies can no longer be trusted."""
    for store in list(_stores):
        store._lock = threading.Lock()
        store.lose()


at_fork_child(_after_fork, 50)
