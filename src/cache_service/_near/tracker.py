"""The near cache's listener: Redis tells it which keys changed (``CLIENT TRACKING``).

One daemon thread per target serves the sync and the asyncio services alike (no event loop
is ever blocked by it). It holds one dedicated RESP3 connection per primary (our own
``_wire.PushConnection``, never a redis-py connection's internals; one on
standalone and Sentinel, one per primary on Cluster) with ``CLIENT TRACKING ON BCAST PREFIX
<each near-cached prefix>``: every write, delete, expiry, eviction or flush of a key under
those prefixes, by any client, is pushed to it as ``invalidate`` and drops the key here.

Chosen over the alternatives, and why:

- BCAST on our prefixes, not the default mode: the default mode needs tracking on every
  pooled connection, redirected, and the server remembers each key each connection read
  (bounded by ``tracking-table-max-keys``, whose evictions flush clients); BCAST costs the
  server nothing per key and covers every key of the prefix whoever wrote it.
- RESP3 pushes on the listener's own connection, not a RESP2 redirect to a pub/sub
  connection: tracking then belongs to the connection that receives it, so when that
  connection dies nothing is left half-subscribed, and heartbeats are plain commands.

Heartbeat: every ``HEARTBEAT`` seconds each link is asked ``ROLE``. Its answer proves that
every invalidation Redis produced before it was delivered, so the entries are trusted until
``WINDOW`` (0.5 s) after the oldest link's last answered heartbeat was sent. A link that
stays silent ``SILENT`` seconds, answers as a replica (a failover), or disconnects, and a
change of the primaries (Sentinel's choice, Cluster's slot owners) empty the near cache;
the tracker links again with the breaker's backoff, and fills resume once it has.

Under the GIL a thread busy serving near hits (no I/O, so it never releases the GIL) would
make the listener wait ~5 ms (the switch interval) for every step it takes. So the hits
help: once ``DRAIN_LAG`` has passed since the links were last read, the next hit reads
whatever is waiting on them before it looks (``_wire.PushConnection``: non-blocking, and
without releasing the GIL, so no thread ever waits for the GIL while it holds the links), and the
thread leaves the reading to the hits while they come. Invalidations are
then applied within about a millisecond whatever the load. A hit that finds another thread
reading the links for over ``GRACE`` past due goes to Redis instead of serving a copy that
may be stale. TLS links are read by the thread alone (their reads go through OpenSSL and
release the GIL): there an invalidation can wait a few switch intervals under such load.
"""

from __future__ import annotations

import logging
import selectors
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from cache_service._near.store import WINDOW, NearStore
from cache_service._redis.backend import tracking_names, tracking_nodes
from cache_service._wire import HandshakeError, PushConnection, ReplyError, WireSettings
from cache_service.forking import at_fork_child

if TYPE_CHECKING:
    from cache_service.config import Location, TargetOptions

__all__ = ["DRAIN_LAG", "GRACE", "HEARTBEAT", "SILENT", "Tracked", "Tracker"]

log = logging.getLogger("cache_service")

HEARTBEAT = 0.1  # seconds between two ROLEs on a link
SILENT = 0.3  # a heartbeat unanswered this long: the link is hung
DRAIN_LAG = 0.001  # a hit reads the links itself when they were not read for this long
GRACE = 0.002  # links being read by another thread this long past due: hits go to Redis
_NOT_DUE = float("inf")


class _Lost(Exception):
    """Coherence is lost on a link; relink."""


class _Link:
    """One tracking connection to one primary: our own RESP3 connection (``_wire``), which
    connects (TLS, AUTH, HELLO 3, SELECT), then sends and reads without ever blocking."""

    def __init__(self, name: str, settings: Callable[[], WireSettings],
                 on_push: Callable[[list[object]], None]) -> None:
        self.name = name
        self.settings = settings
        self.on_push = on_push
        self.sent: deque[float] = deque()  # send times of unanswered heartbeats
        self.confirmed = 0.0  # send time of the last answered heartbeat
        self.connection: PushConnection | None = None

    def open(self) -> PushConnection:
        self.connection = PushConnection(self.settings(), on_push=self.on_push)
        return self.connection

    def send(self, *args: str) -> None:
        assert self.connection is not None
        self.connection.send(*args)

    def replies(self) -> list[object]:
        """Every complete reply waiting on the link (never blocks; pushes were handled)."""
        assert self.connection is not None
        return self.connection.replies()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


class Tracked(Protocol):
    """What the tracker needs of its target (``target.Target``), so this module does not
    import the one that uses it: where Redis is, its options, and its sync data client
    (``_client``: the one built so far, if any, whose nodes the links must cover)."""

    location: Location
    options: TargetOptions
    _client: Any

    def sync_client(self) -> Any:
        """The blocking data client (built on first use)."""
        ...


class Tracker:
    """Keeps ``store`` coherent with ``target``'s Redis for the prefixes it was given."""

    def __init__(self, target: Tracked, store: NearStore) -> None:
        self.target = target
        self.store = store
        self.links_made = 0  # how many times every link was (re)made: tests wait on it
        self.refused: str | None = None  # why Redis will not track for us, if it will not
        self._heads: set[str] = set()
        self._version = 0  # bumped when a prefix is added or coherence is doubted: relink
        self._linked: frozenset[str] = frozenset()
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # one reader of the links at a time
        self._running = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._broken: BaseException | None = None  # what a helping hit ran into
        self._helped = False  # whether hits read the links (each read keeps the GIL)
        store.covers = self.covers
        store.help = self.help
        _all.add(self)

    # -- control (any thread) -------------------------------------------------------------------
    def add_prefix(self, head: str) -> None:
        """Also track keys starting with ``head`` (takes effect at the next link)."""
        with self._lock:
            if head in self._heads:
                return
            self._heads.add(head)
            self._version += 1
        self._wake.set()

    def ensure_running(self) -> None:
        """Start the thread unless it runs (called by fills: the first use starts it); a
        ``stop`` it has not acted on yet is called off."""
        if self._running and not self._stop.is_set():
            return
        with self._lock:
            self._stop.clear()
            if self._running:  # it goes on, or sees the cleared stop on its way out
                return
            self._running = True
        name = f"cache_service-tracking-{self.target.location.describe()}"
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def stop(self) -> None:
        """End the thread (it empties the near cache on its way out)."""
        self._stop.set()
        self._wake.set()

    def relink(self) -> None:
        """Coherence may be lost (an outage began or ended): empty and link again."""
        self.store.lose()
        with self._lock:
            self._version += 1
        self._wake.set()

    def covers(self) -> bool:
        """Whether the links reach every primary the data clients now use (a fill read
        from a primary we do not hear from must not be kept)."""
        client = self.target._client
        return client is not None and tracking_names(client) == self._linked

    def help(self) -> bool:
        """A hit found the links unread for ``DRAIN_LAG``: read them now. False (do not
        serve from the near cache) when another thread has been reading them for over
        ``GRACE``: it waits for the GIL with pushes in hand; a Redis read lets it run."""
        if not self._helped:  # TLS links: their reads release the GIL; the thread reads
            return True
        if not self._reading.acquire(blocking=False):
            return time.monotonic() < self.store.drain_due + GRACE
        try:
            self._drain()
        except Exception as exc:  # the thread relinks; until then nothing is trusted
            self.store.lose()
            self._broken = exc
            self._wake.set()
            return False
        finally:
            self._reading.release()
        return True

    def after_fork(self) -> None:
        """In a forked child: the parent's thread and sockets are not ours."""
        self._lock = threading.Lock()
        self._reading = threading.Lock()
        self._running = False
        self._linked = frozenset()
        self._links = []

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        target = self.target
        floor, ceiling = target.options.breaker_min_backoff, target.options.breaker_max_backoff
        backoff = floor
        try:
            while not self._stop.is_set():
                linked = None
                try:
                    version = self._link()
                    linked = time.monotonic()
                    self._serve(version)  # returns when asked to relink or to stop
                    continue
                except Exception as exc:  # unreachable, refusing, failing over, a lost link
                    log.debug("near-cache tracking of %s: %s",
                              target.location.describe(),
                              exc if isinstance(exc, _Lost) else repr(exc))
                    refusal = _refusal(exc)
                    if refusal is not None:  # an answer, not an outage
                        self._refused(refusal)
                    if linked is not None and time.monotonic() - linked > 2 * ceiling:
                        backoff = floor  # it served a good while: a new trouble
                    # Every loss waits: a node that keeps answering as a replica, or refusing
                    # tracking, must not be reconnected to in a tight loop.
                    self._wake.clear()
                    self._wake.wait(backoff)
                    backoff = min(backoff * 2, ceiling)
                finally:
                    self._unlink()
        finally:
            with self._lock:
                self._running = False
                again = not self._stop.is_set()  # a stop called off as it ended
            if again:
                self.ensure_running()

    def _refused(self, why: str) -> None:
        """Say once (per distinct reason) that this Redis will not track for us: the near
        cache is bypassed (reads go to Redis) until it does; ``stats()`` shows it too."""
        if why != self.refused:
            self.refused = why
            log.warning("the near cache of %s is bypassed: %s (it needs Redis "
                        ">= 6 or Valkey, and permission for HELLO 3 and CLIENT TRACKING)",
                        self.target.location.describe(), why)

    def _unlink(self) -> None:
        self.store.drain_due = _NOT_DUE
        self.store.lose()
        with self._reading:
            links, self._links = self._links, []
        self._linked = frozenset()
        self._broken = None
        for link in links:
            link.close()

    def _link(self) -> int:
        """Connect to every primary and turn tracking on; the store stays empty and
        untrusted until the first heartbeat of every link is answered."""
        with self._lock:
            version = self._version
            heads = _disjoint(self._heads)
        if not heads:
            raise _Lost("no prefix to track yet")
        target = self.target
        client = target.sync_client()
        timeout = target.options.socket_timeout
        links: list[_Link] = []
        try:
            for name, settings in tracking_nodes(client, target.location,
                                                 target.options).items():
                link = _Link(name, settings, self._on_push)
                links.append(link)
                link.open()
                args = ["CLIENT", "TRACKING", "ON", "BCAST"]
                for head in heads:
                    args += ["PREFIX", head]
                link.send(*args)
                reply, *more = _first_replies(link, timeout)
                if reply != b"OK":
                    self._refused(f"CLIENT TRACKING was refused: {reply}")
                    raise _Lost("CLIENT TRACKING refused")
                for reply in more:
                    self._on_reply(link, reply)
            if not links:
                raise _Lost("no primary known yet")
            self._linked = tracking_names(client)  # as the connects left them
        except BaseException:
            for link in links:
                link.close()
            raise
        self.refused = None
        with self._reading:
            self._links = links
            self._helped = all(link.connection is not None and link.connection.keeps_gil
                               for link in links)
            self.store.drain_due = 0.0  # read at once, by whichever thread comes first
        self.links_made += 1
        return version

    def _serve(self, version: int) -> None:
        """Apply pushes and heartbeat until a link is lost or a relink is asked for."""
        links = self._links
        store = self.store
        selector = selectors.DefaultSelector()
        try:
            for link in links:
                assert link.connection is not None
                selector.register(link.connection, selectors.EVENT_READ)
            next_beat = 0.0
            while True:
                now = time.monotonic()
                if self._stop.is_set() or self._version != version:
                    return
                if self._broken is not None:
                    raise _Lost(f"a read failed: {self._broken!r}")
                if now >= next_beat:
                    if not self.covers():
                        raise _Lost("the primaries changed")
                    for link in links:
                        if link.sent and now - link.sent[0] > SILENT:
                            raise _Lost(f"{link.name} did not answer for {SILENT}s")
                        link.sent.append(now)
                        link.send("ROLE")
                    next_beat = now + HEARTBEAT
                ready = selector.select(max(0.0, min(next_beat - time.monotonic(),
                                                     HEARTBEAT)))
                self._wake.clear()
                if not ready:
                    continue
                lag = store.drain_due - time.monotonic()
                if lag > 0 and self._helped:  # hits read the links lately, and will again
                    time.sleep(lag)
                    continue
                with self._reading:
                    self._drain()
        finally:
            selector.close()

    def _drain(self) -> None:
        """Read and apply everything waiting on the links (with ``_reading`` held)."""
        store = self.store
        links = self._links
        for link in links:
            for reply in link.replies():
                self._on_reply(link, reply)
        if links:
            store.trust(min(link.confirmed for link in links) + WINDOW)
        store.drain_due = time.monotonic() + DRAIN_LAG

    def _on_push(self, push: list[object]) -> None:
        """An invalidation (other pushes are not ours: ignored)."""
        if not push or push[0] != b"invalidate":
            return
        store = self.store
        keys = push[1]
        next(store.invalidations)
        if keys is None:  # FLUSHDB / FLUSHALL
            store.flush()
        else:
            store.invalidate([k.decode("utf-8", "replace") for k in keys])  # type: ignore[attr-defined]

    def _on_reply(self, link: _Link, reply: object) -> None:
        """A heartbeat's answer: ROLE's (a primary's, unless standalone)."""
        if not link.sent or isinstance(reply, ReplyError):
            raise _Lost(f"unexpected reply from {link.name}: {reply!r:.80}")
        if self.target.location.kind != "standalone" and (
                not isinstance(reply, list) or not reply or reply[0] != b"master"):
            raise _Lost(f"{link.name} is no longer a primary")
        link.confirmed = link.sent.popleft()


def _refusal(exc: BaseException) -> str | None:
    """Why the server will not track for us, when ``exc`` is its answer (no RESP3, no
    permission); None for an outage or a failed login (which the data path reports)."""
    if not isinstance(exc, HandshakeError) or exc.reply is None:
        return None
    if exc.reply.code in ("WRONGPASS", "NOAUTH") or "password" in exc.reply.message:
        return None
    return f"Redis answered {exc.reply.message}"


def _first_replies(link: _Link, timeout: float) -> list[Any]:
    """The reply to the command just sent on a new link (nothing else arrives before it),
    and any pushes read with it."""
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    try:
        assert link.connection is not None
        selector.register(link.connection, selectors.EVENT_READ)
        while True:
            replies = link.replies()
            if replies:
                return replies
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Lost(f"{link.name} did not answer within {timeout}s")
            selector.select(left)
    finally:
        selector.close()


def _disjoint(heads: set[str]) -> list[str]:
    """The prefixes to track: Redis refuses overlapping ones, and a shorter one already
    covers every key of a longer one it starts."""
    kept: list[str] = []
    for head in sorted(heads):
        if not any(head.startswith(k) for k in kept):
            kept.append(head)
    return kept


_all: weakref.WeakSet[Tracker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tracker in list(_all):
        tracker.after_fork()


at_fork_child(_after_fork_in_child, 40)
