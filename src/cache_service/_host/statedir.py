"""The state directory: only ours is used, files are opened safely, unused ones are removed.

Anyone on the host may create ``<tmp>/cache_service-<uid>`` before us, plant symlinks or files
of their own in it, or own a directory on the way to it. So a directory is used only if it and
every directory above it are ours or root's and writable by nobody else (a sticky directory such
as ``/tmp`` excepted), and it is not a symlink (``check_dir``). Each file in it is opened without
following a symlink and checked after opening: a regular file of ours with one link, mode 0600
(``open_private``). SQLite's ``-wal``/``-shm`` are made the same way before SQLite opens them.

Files of a location no process has used for ``max_age()`` seconds are removed (``sweep``), never
while a process has them open (each attached process holds a shared flock on the location's
page) and never while its journal holds an invalidation not yet replayed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import re
import sqlite3
import stat
import threading
import time
from pathlib import Path
from urllib.parse import quote

__all__ = ["KEY_FILE", "SUFFIXES", "UnsafeState", "check_dir", "ensure_private", "host_key",
           "max_age", "open_private", "sweep", "sweep_due"]

log = logging.getLogger("cache_service")

# Every file a location has; the page is removed last (see ``sweep``).
SUFFIXES = (".db", ".db-wal", ".db-shm", ".lock", ".recovery", ".page")
_NAME = re.compile(r"^([0-9a-f]{20})(\.page|\.lock|\.recovery|\.db|\.db-wal|\.db-shm)$")
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
SWEEP_EVERY = 3600.0  # per process and directory
SWEEP_LIMIT = 64  # locations looked at per sweep

# The host's secret for keyed fingerprints of credentials (see ``host_key``); never swept.
KEY_FILE = "host.key"
KEY_BYTES = 32

_last_sweep: dict[str, float] = {}
_sweep_lock = threading.Lock()


class UnsafeState(OSError):
    """The state directory or one of its files is not safely ours."""


def max_age() -> float:
    """Seconds after which an unused location's files go: ``$CACHE_SERVICE_STATE_MAX_AGE``,
    else 7 days."""
    raw = os.environ.get("CACHE_SERVICE_STATE_MAX_AGE")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value > 0 and math.isfinite(value):
            return value
        log.warning("CACHE_SERVICE_STATE_MAX_AGE must be a positive number of "
                    "seconds, got %r; using %d", raw, DEFAULT_MAX_AGE)
    return DEFAULT_MAX_AGE


def _unsafe_ancestor(path: Path, uid: int) -> str | None:
    """Why a directory above ours lets someone else swap what our path leads to, if it does."""
    here = Path(os.path.realpath(path.parent))
    for directory in (here, *here.parents):
        st = os.stat(directory)
        if st.st_uid not in (0, uid):
            return f"{directory} (above it) belongs to uid {st.st_uid}"
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return f"{directory} (above it) is writable by others and not sticky"
    return None


def check_dir(directory: Path) -> None:
    """Make ``directory`` (0700) if it is missing; raise ``UnsafeState`` unless it is a
    directory of ours, not a symlink, that only we can write, under directories nobody else
    can change."""
    uid = os.geteuid()
    if not directory.parent.exists():
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(directory):
            raise UnsafeState(f"{directory} is a symbolic link") from exc
        raise
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if st.st_uid != uid:
        raise UnsafeState(f"{directory} belongs to uid {st.st_uid}, not to this process' "
                          f"uid {uid}")
    if st.st_mode & 0o022:
        raise UnsafeState(f"{directory} is writable by group or others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o})")
    why = _unsafe_ancestor(directory, uid)
    if why is not None:
        raise UnsafeState(why)


def _is_private(path: str, st: os.stat_result) -> bool:
    """Whether ``st`` (of ``path``) is a regular file of ours with one link and mode 0600;
    ``UnsafeState`` unless it is at least a regular file of ours with one link."""
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeState(f"{path} is not a regular file")
    if st.st_uid != os.geteuid():
        raise UnsafeState(f"{path} belongs to uid {st.st_uid}")
    if st.st_nlink != 1:
        raise UnsafeState(f"{path} has {st.st_nlink} hard links")
    return stat.S_IMODE(st.st_mode) == 0o600


def open_private(path: str, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """Open ``path`` without following a symlink; a descriptor of a regular file of ours with
    one link and mode 0600 (set if it had more), else ``UnsafeState``."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if not _is_private(path, os.fstat(fd)):
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_private(path: str) -> None:
    """Create ``path`` (0600, no symlink followed) if missing, else check it as
    ``open_private`` does, without opening it: closing a descriptor of a database file would
    drop every POSIX lock SQLite holds on it in this process."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600))
        return
    except FileExistsError:
        pass
    if not _is_private(path, os.lstat(path)):
        os.chmod(path, 0o600)  # a regular file (checked) in a directory only we write


def host_key(directory: Path) -> bytes:
    """The random secret of ``directory`` (32 bytes in ``host.key``, 0600, ours, no symlink
    followed): made by the first process that needs it, under an exclusive flock so that every
    process of the host reads the same one. Read anew each time (a location attaches once):
    a directory removed and made again gets a new one. ``UnsafeState``/``OSError`` if it
    cannot be had."""
    check_dir(directory)
    fd = open_private(str(directory / KEY_FILE))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        key = os.pread(fd, KEY_BYTES + 1, 0)
        if len(key) != KEY_BYTES:  # new, or cut short by a crash while it was written
            key = os.urandom(KEY_BYTES)
            os.ftruncate(fd, 0)
            os.pwrite(fd, key, 0)
            os.fsync(fd)
        return key
    finally:
        os.close(fd)  # frees the flock


def sweep_due(directory: Path) -> bool:
    """Whether this process should sweep ``directory`` now (at most once an hour)."""
    now = time.monotonic()
    with _sweep_lock:
        last = _last_sweep.get(str(directory))
        if last is not None and now - last < SWEEP_EVERY:
            return False
        _last_sweep[str(directory)] = now
        return True


def sweep(directory: Path, keep: str, age: float | None = None,
          limit: int = SWEEP_LIMIT) -> list[str]:
    """Remove the files of locations (other than ``keep``) unused for ``age`` seconds; the
    names removed. At most ``limit`` locations are looked at; errors only skip a location."""
    age = max_age() if age is None else age
    groups: dict[str, list[str]] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            match = _NAME.match(entry.name)
            if match and match.group(1) != keep:
                groups.setdefault(match.group(1), []).append(entry.name)
    removed = []
    cutoff = time.time() - age
    for name in sorted(groups)[:limit]:
        try:
            if _remove_unused(directory, name, groups[name], cutoff):
                removed.append(name)
        except (OSError, sqlite3.Error) as exc:
            log.debug("kept the state of %s in %s: %s", name, directory, exc)
    if removed:
        log.info("removed the state of %d location(s) unused for %.0f s from %s",
                 len(removed), age, directory)
    return removed


def _remove_unused(directory: Path, name: str, files: list[str], cutoff: float) -> bool:
    """Remove one location's files if no process holds its page, none was touched since
    ``cutoff`` and its journal is empty; whether they were removed."""
    base = directory / name
    if f"{name}.page" not in files:
        return False  # a location is attached through its page: without one, leave it
    for file in files:
        st = os.lstat(directory / file)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() \
                or st.st_mtime > cutoff:
            return False
    fd = open_private(f"{base}.page", os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # every attached process holds SH
        except BlockingIOError:
            return False
        if f"{name}.db" in files and _journal_pending(f"{base}.db"):
            return False
        for suffix in SUFFIXES:  # the page last: an attacher that opened it before sees it go
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{base}{suffix}")
        return True
    finally:
        os.close(fd)


def _journal_pending(path: str) -> bool:
    """Whether the database at ``path`` has invalidations to replay (read-only; an unreadable
    one counts as pending: it is kept)."""
    db = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=1.0)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'journal'").fetchone():
            return False  # never initialised: nothing was journaled
        return bool(db.execute("SELECT count(*) FROM journal").fetchone()[0])
    except sqlite3.Error:
        return True
    finally:
        db.close()
