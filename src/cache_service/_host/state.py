"""State one Redis location shares among the processes of a host: a page, locks, a database.

Workers of one app (``uvicorn --workers``, gunicorn) must agree on whether Redis is usable,
on what was invalidated while it was not, and (with the shared fallback) on the values served
meanwhile. Per location, in a local directory (see ``resolve_dir``)::

    <name>.page      a small mmap: breaker state, generation, counters; read lock-free per call
    <name>.lock      flock: serialises state changes and journal / fallback writes
    <name>.recovery  flock: held by the one process that probes Redis and replays the journal
    <name>.db        SQLite in WAL mode: the outage journal, tombstones, the shared fallback

``<name>`` hashes everything that makes the location a different Redis, and a keyed
fingerprint of its credentials (``location_name``): a service with a wrong password must not
open the breaker of those with the right one, and no file name may reveal a password. The
directory and its files are checked and opened as ``statedir`` says. Without a usable directory
(not ours, read-only, full, ``state_dir=False``) the same code runs on an anonymous page and an
in-memory database: process-local state, as a single process needs anyway.

Expiry shared by the host's processes (fallback rows, tombstones) uses ``host_clock``: the same
in every process, immune to wall-clock steps. A page written under another boot is started anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import mmap
import os
import sqlite3
import tempfile
import threading
import time
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path

from cache_service._host.statedir import (
    UnsafeState,
    check_dir,
    ensure_private,
    host_key,
    open_private,
    sweep,
    sweep_due,
)
from cache_service.config import Location
from cache_service.forking import at_fork_child
from cache_service.redis_glob import redis_match

__all__ = ["CLOSED_COUNT", "FB_BYTES", "FB_ENTRIES", "FB_EVICTIONS", "GEN", "NEAR_USED",
           "NEAR_WRITES", "OPENED", "PAGE_BYTES", "STATE", "WRITES", "HostState", "host_clock",
           "host_state", "key_slot", "mark_written", "resolve_dir"]

log = logging.getLogger("cache_service")

# Slots of the state page (signed 64-bit integers). STATE is written before GEN on every
# transition, and readers read GEN first, so a reader never takes a new GEN for an old STATE.
# The fallback's rows a process read stay valid while WRITES (moved by writes of many keys)
# and the row's key slot (KEY_BASE + crc32(key) % KEY_SLOTS, moved by writes of that key) stay
# as they were; both move after the write's commit. FB_*: the shared fallback's totals, kept
# here (under the lock) instead of in SQL rows.
(GEN, STATE, OPENED, CLOSED_COUNT, STARTED_NS, MAGIC_SLOT, WRITES, FB_ENTRIES, FB_BYTES,
 FB_EVICTIONS, NEAR_WRITES, NEAR_USED, BOOT) = range(13)
# Once a process of the host has a near cache (NEAR_USED, set before its first fill and never
# cleared), writes to Redis by any service of the host also move the written key's slot, or
# NEAR_WRITES for a pattern: a near-cache entry filled before is then not served, in any
# process of the host, without waiting for Redis' invalidation push (``mark_written``; no
# lock: a lost increment only leaves that one write to the push).
KEY_BASE, KEY_SLOTS = 16, 4096
PAGE_MAGIC = 0x63735F7061676531  # "cs_page1"
PAGE_BYTES = (KEY_BASE + KEY_SLOTS) * 8

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal(
    kind INTEGER NOT NULL, name TEXT NOT NULL, writer INTEGER NOT NULL, stamp INTEGER NOT NULL,
    PRIMARY KEY (kind, name, writer)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tombstones(
    kind INTEGER NOT NULL, name TEXT NOT NULL, writer INTEGER NOT NULL, stamp INTEGER NOT NULL,
    until REAL NOT NULL, PRIMARY KEY (kind, name, writer)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fallback(
    key TEXT NOT NULL UNIQUE, payload BLOB NOT NULL, expires REAL NOT NULL, gen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""


def resolve_dir(option: str | os.PathLike[str] | bool | None) -> Path | None:
    """The directory for host-shared files: ``option``, else ``$CACHE_SERVICE_DIR``, else
    ``<tempdir>/cache_service-<uid>``; ``False`` means none (process-local state)."""
    if option is False:
        return None
    if option is None or option is True:
        env = os.environ.get("CACHE_SERVICE_DIR")
        base = env or os.path.join(tempfile.gettempdir(), f"cache_service-{os.getuid()}")
        return Path(base)
    return Path(option)


def location_name(location: Location, directory: Path | None) -> str:
    """A file name for ``location`` in ``directory``: a hash of everything that makes it a
    different Redis (socket path, seeds, Sentinel service, db, user, TLS) and, if it has any,
    of ``credentials_fingerprint``. Without credentials the name is the same as before they
    were part of it (state kept by an older version is found again)."""
    parts: tuple[object, ...] = (
        "v2", location.kind, tuple(sorted(location.hosts)), location.unix_socket, location.db,
        location.username, location.service_name, location.ssl)
    fingerprint = credentials_fingerprint(location, directory)
    if fingerprint is not None:
        parts = (*parts, fingerprint)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


# The key of fingerprints when there is no usable directory: the state is per process then.
_PROCESS_KEY = os.urandom(32)


def credentials_fingerprint(location: Location, directory: Path | None) -> str | None:
    """A keyed BLAKE2b of ``location``'s credentials and TLS files (None if it has none), so
    that two services of a host that differ only in those share nothing: a wrong password
    makes a location of its own. Keyed by the host's secret (``statedir.host_key``): without
    it, a name cannot be tested against guessed passwords; without a usable directory, by a
    per-process secret (nothing is shared then)."""
    secrets = (location.password, location.sentinel_password, location.ssl_ca_certs,
               location.ssl_certfile, location.ssl_keyfile)
    if not any(secrets):
        return None
    key = _PROCESS_KEY
    if directory is not None:
        with contextlib.suppress(OSError):  # UnsafeState too: HostState then says why
            key = host_key(directory)
    return hashlib.blake2b(repr(secrets).encode("utf-8", "surrogatepass"), key=key,
                           digest_size=16, person=b"cs-credentials").hexdigest()


# CLOCK_BOOTTIME: one clock for every process of a Linux host that wall-clock steps do not
# move and that, unlike CLOCK_MONOTONIC, goes on during a suspend (a row's TTL is real time).
_HOST_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def host_clock() -> float:
    """Seconds on the host's clock, for expiry shared by its processes (see module doc)."""
    return time.clock_gettime(_HOST_CLOCK)


@functools.lru_cache(maxsize=1)
def boot_id() -> int:
    """This boot of the host, as a number (0 where the system does not say): the host clock
    restarts at boot, so times kept in files from another boot mean nothing."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return int.from_bytes(hashlib.sha256(f.read()).digest()[:7], "big") or 1
    except OSError:
        return 0


def key_slot(key: str) -> int:
    """The page slot whose value moves when ``key``'s fallback row changes (same in every
    process: crc32, not the per-process salted ``hash``)."""
    return KEY_BASE + zlib.crc32(key.encode("utf-8", "surrogatepass")) % KEY_SLOTS


def mark_written(page: memoryview, keys: list[str] | None) -> None:
    """This process wrote ``keys`` on Redis (None: keys matching a pattern): move their page
    slots so that every process's near-cache copies of them stop being served (nothing to do
    on a host where no process has a near cache)."""
    if not page[NEAR_USED]:
        return
    if keys is None:
        page[NEAR_WRITES] += 1
        return
    for key in keys:
        page[key_slot(key)] += 1


class HostState:
    """Page, locks and database of one location, file-backed or process-local.

    Thread-safe; after ``fork()`` the child reopens its descriptors and connections (SQLite
    connections must not cross a fork, and flocks are shared by inherited descriptors).
    """

    def __init__(self, location: Location, directory: Path | None,
                 name: str | None = None) -> None:
        self.location = location
        self.name = location_name(location, directory) if name is None else name
        self.problem: str | None = None  # why the directory is not used, if it is not
        self._tlock = threading.RLock()
        self._depth = 0
        self._local = threading.local()
        self._pid = os.getpid()
        self.touched: list[int] | None = []  # key slots the open transaction changes
        self.directory: Path | None = None
        self._page_fd = -1
        if directory is not None:
            try:
                self._open_files(directory)
            except (OSError, sqlite3.Error) as exc:
                self.problem = str(exc) if isinstance(exc, UnsafeState) \
                    else f"{directory}: {exc}"
                log.warning("cannot use %s for state shared by this host's "
                            "processes (%s); using per-process state", directory, self.problem)
                self._close_files()
        if self.directory is None:
            self._open_anonymous()
        elif sweep_due(self.directory):
            try:
                sweep(self.directory, self.name)
            except OSError as exc:
                log.debug("no sweep of %s: %s", self.directory, exc)

    # -- opening ------------------------------------------------------------------------------
    def _open_files(self, directory: Path) -> None:
        check_dir(directory)
        base = directory / self.name
        self._page_fd = self._open_page(f"{base}.page")
        self._lock_fd = open_private(f"{base}.lock")
        self._recovery_path: str | None = f"{base}.recovery"
        self._recovery_fd: int | None = None  # open only while this process recovers
        for suffix in (".db", ".db-wal", ".db-shm"):  # 0600 and no symlink: SQLite gives its
            ensure_private(f"{base}{suffix}")  # -wal/-shm the .db file's mode
        # Every block allocated now: a write to a hole of a mapped file on a full disk is a
        # SIGBUS, not an error.
        os.posix_fallocate(self._page_fd, 0, PAGE_BYTES)
        os.utime(self._page_fd)  # used now: see statedir.sweep
        self._mmap = mmap.mmap(self._page_fd, PAGE_BYTES)
        self.page = memoryview(self._mmap).cast("q")
        self.db_path: str = f"{base}.db"
        self.directory = directory
        self._init_page()

    @staticmethod
    def _open_page(path: str) -> int:
        """The page, open and share-locked for as long as this process uses the location (so
        no sweep removes it); retried if a sweep removed it between the open and the lock."""
        for _ in range(10):
            fd = open_private(path)
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                if os.fstat(fd).st_nlink == 1 and os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)
        raise UnsafeState(f"{path} keeps being removed")

    def _open_anonymous(self) -> None:
        self._lock_fd = -1
        self._recovery_path = None
        self._recovery_fd = None
        # Private: a forked child's writes stay its own (its state is process-local too).
        self._mmap = mmap.mmap(-1, PAGE_BYTES, flags=mmap.MAP_PRIVATE)
        self.page = memoryview(self._mmap).cast("q")
        self.db_path = f"file:cs-{id(self)}-{os.getpid()}?mode=memory&cache=shared"
        self._keepalive = self._connect()  # a shared in-memory db lives while one is open
        self._init_page()

    def _init_page(self) -> None:
        page = self.page
        with self.lock():
            db = self.writer()  # a damaged database file fails here, before any use
            if page[MAGIC_SLOT] != PAGE_MAGIC or page[BOOT] != boot_id() \
                    or page[STATE] not in (0, 1, 2):
                # A new or foreign page: start generations where no old fallback row can
                # match them; rows and tombstones timed on another boot's clock go.
                page[STATE] = 0
                page[GEN] = time.time_ns() // 1000 * 2
                page[BOOT] = boot_id()
                page[MAGIC_SLOT] = PAGE_MAGIC
                db.execute("DELETE FROM fallback")
                db.execute("DELETE FROM tombstones")
                page[FB_ENTRIES] = page[FB_BYTES] = 0

    def _connect(self) -> sqlite3.Connection:
        uri = self.directory is None
        db = sqlite3.connect(self.db_path, timeout=5.0, isolation_level=None,
                             check_same_thread=False, uri=uri)
        db.create_function("redis_match", 2, redis_match, deterministic=True)
        if not uri:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA journal_size_limit=8388608")
        db.executescript(SCHEMA)
        return db

    def close(self) -> None:
        """Close what this host state opened (this thread's reader, the writer, the page and
        the descriptors). A process keeps its host states for its life; a test's must not
        outlive the test's directory."""
        with contextlib.suppress(Exception):
            with self.read() as db:
                db.close()
            self.writer().close()
            self.page.release()
            self._mmap.close()
        self._close_files()

    def _close_files(self) -> None:
        for name in ("_lock_fd", "_page_fd"):
            fd = getattr(self, name, None)
            if isinstance(fd, int) and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
            setattr(self, name, -1)
        self.directory = None

    def after_fork(self) -> None:
        """In a forked child: new descriptors and connections; nothing held is inherited."""
        self._pid = os.getpid()
        self._tlock = threading.RLock()
        self._depth = 0
        self._local = threading.local()
        if self.directory is not None:
            base = self.directory / self.name
            with contextlib.suppress(OSError):  # the parent's: closing our copy frees nothing
                os.close(self._lock_fd)
                if self._recovery_fd is not None:
                    os.close(self._recovery_fd)
            self._lock_fd = open_private(f"{base}.lock")
            self._recovery_fd = None
        else:  # process-local state: a private copy of the page, a database of its own
            self.db_path = f"file:cs-{id(self)}-{self._pid}?mode=memory&cache=shared"
            self._keepalive = self._connect()

    @property
    def shared(self) -> bool:
        """Whether this state lives in files shared by the host's processes."""
        return self.directory is not None

    def describe(self) -> str:
        """Where the state lives, for stats and logs."""
        return str(self.directory) if self.directory is not None else "process"

    # -- connections and locks ------------------------------------------------------------------
    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads: this thread's own on files (no lock, a consistent snapshot
        per statement), the writer under the thread lock for process-local state."""
        if self.directory is None:
            with self._tlock:
                yield self.writer()
            return
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        yield db

    def writer(self) -> sqlite3.Connection:
        """The connection for writes; use inside ``transaction()`` or ``lock()``."""
        db: sqlite3.Connection | None = getattr(self, "_writer", None)
        if db is None or getattr(self, "_writer_pid", None) != self._pid:
            db = self._writer = self._connect()
            self._writer_pid = self._pid
        return db

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive across this host's processes (flock) and threads (re-entrant)."""
        with self._tlock:
            self._depth += 1
            try:
                if self._depth == 1 and self._lock_fd >= 0:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_fd >= 0:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer connection inside one write transaction (nested uses join it)."""
        with self.lock():
            db = self.writer()
            if self._depth > 1 and db.in_transaction:
                yield db
                return
            db.execute("BEGIN IMMEDIATE")
            self.touched = []
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            page, touched = self.page, self.touched  # after the commit: a reader that sees
            if touched is None:                      # a slot move sees the rows
                page[WRITES] += 1
            else:
                for slot in touched:
                    page[slot] += 1
            self.touched = []

    def touch(self, key: str | None) -> None:
        """In a transaction: the fallback row of ``key`` changes (None: rows of many keys)."""
        if key is None:
            self.touched = None
        elif self.touched is not None:
            self.touched.append(key_slot(key))

    def try_recovery(self) -> bool:
        """Become the host's recoverer, if no other process is (never blocks)."""
        if self._recovery_path is None:
            return True
        fd = open_private(self._recovery_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._recovery_fd = fd
        return True

    def end_recovery(self) -> None:
        """Let another process recover next time (closing the descriptor frees the flock)."""
        fd, self._recovery_fd = self._recovery_fd, None
        if fd is not None:
            os.close(fd)

    # -- meta counters --------------------------------------------------------------------------
    def meta(self, name: str) -> int:
        """A shared counter's value (0 when the database cannot be read: it is only shown)."""
        try:
            with self.read() as db:
                row = db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        except sqlite3.Error:
            return 0
        return int(row[0]) if row else 0

    def bump(self, db: sqlite3.Connection, name: str, delta: int) -> None:
        """Add ``delta`` to a shared counter (inside a transaction)."""
        db.execute("INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) "
                   "DO UPDATE SET value = value + excluded.value", (name, delta))


_hosts: dict[tuple[str, Path | None], HostState] = {}
_hosts_lock = threading.Lock()
_all: weakref.WeakSet[HostState] = weakref.WeakSet()


def host_state(location: Location, directory: Path | None) -> HostState:
    """The process-wide HostState of ``location`` in ``directory`` (shared by its targets).

    Keyed by the location's file name, not the Location: two Locations with one name share
    files, and a second HostState on them would open and close descriptors of the database,
    which drops every POSIX lock SQLite holds on it in this process."""
    key = (location_name(location, directory), directory)
    with _hosts_lock:
        state = _hosts.get(key)
        if state is None:
            state = _hosts[key] = HostState(location, directory, key[0])
            _all.add(state)
        return state


def _after_fork_in_child() -> None:
    for state in list(_all):
        try:
            state.after_fork()
        except (OSError, UnsafeState) as exc:  # e.g. its directory was removed: the next use
            log.warning("after fork, cannot reopen the state in %s (%s)",
                        state.describe(), exc)  # of it fails and degrades, as in the parent


at_fork_child(_after_fork_in_child, 20)

