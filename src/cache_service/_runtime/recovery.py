"""Background recovery: one daemon thread per target probes Redis while the breaker is open.

Callers never probe, so an outage, a hang or a misconfiguration costs them nothing: they are
on the fallback until the breaker closes. A round that fails in any way (the state directory
removed, no file descriptor left, a damaged database) is logged and retried with the backoff;
if the host files failed, the target goes on with per-process state (``Target.degrade``).
Of a host's processes, the one holding the
location's recovery flock probes (with the breaker's backoff) and replays the shared journal;
the others only poll, to take over if it exits. The thread ends when the breaker closes and
is started again by the next outage; a forked child starts its own.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
import weakref
from typing import TYPE_CHECKING, Protocol

from cache_service.forking import at_fork_child, renew_locks

if TYPE_CHECKING:
    from cache_service._host.breaker import Breaker
    from cache_service.config import Location

__all__ = ["Recoverable", "Recovery"]

log = logging.getLogger("cache_service")
LOG_EVERY = 60.0  # seconds between two warnings about failing rounds


class Recoverable(Protocol):
    """What the recoverer needs of its target (``target.Target``), so this module does not
    import the one that uses it."""

    location: Location
    breaker: Breaker

    def probe(self) -> bool:
        """Reach Redis, replay the journal, close the breaker; True when closed."""
        ...

    def degrade(self, exc: BaseException) -> None:
        """Go on with per-process state after the host files failed."""
        ...


class Recovery:
    """Runs ``target.probe()`` in the background until the breaker is closed."""

    def __init__(self, target: Recoverable) -> None:
        self.target = target
        self._lock = threading.Lock()
        self.running = False  # read without the lock by every call during an outage
        self._turn = 0  # which thread may run: a stopped one sees another turn and ends
        self.wake = threading.Event()
        self._next_log = 0.0
        _all.add(self)

    def after_fork(self) -> None:
        """In a forked child: the parent's thread is not ours (nor its lock or wake-up)."""
        renew_locks(self)
        self.running = False

    def ensure_running(self) -> None:
        """Start the thread unless it runs."""
        with self._lock:
            if self.running:
                return
            self.running = True
            self._turn += 1
            turn = self._turn
        name = f"cache_service-recovery-{self.target.location.describe()}"
        threading.Thread(target=self._run, args=(turn,), name=name, daemon=True).start()

    def stop(self) -> None:
        """End the thread (``close()``): the next call that finds the breaker open starts
        another, so nothing probes a location no one uses any more."""
        with self._lock:
            self.running = False
            self._turn += 1
        self.wake.set()

    def _run(self, turn: int) -> None:
        target = self.target
        backoff = target.breaker.min_backoff
        next_try = time.monotonic() + backoff
        while True:
            breaker = target.breaker  # re-read: a failing disk can swap the host state
            with self._lock:
                if self._turn != turn:  # stopped
                    return
                if not breaker.is_open:
                    self.running = False
                    return
            try:  # a round never ends the thread: anything it raises is retried later
                if not breaker.host.try_recovery():  # another process of this host recovers
                    self.wake.wait(min(breaker.min_backoff, 0.25))
                    continue
                try:
                    while target.breaker is breaker and breaker.is_open and self._turn == turn:
                        delay = next_try - time.monotonic()
                        if delay > 0:
                            self.wake.wait(delay)
                            self.wake.clear()
                            continue
                        if target.probe():
                            backoff = breaker.min_backoff
                        else:
                            backoff = min(backoff * 2, breaker.max_backoff)
                        next_try = time.monotonic() + backoff
                finally:
                    breaker.host.end_recovery()
            except Exception as exc:
                backoff = min(backoff * 2, breaker.max_backoff)
                next_try = time.monotonic() + backoff
                self._trouble(exc, backoff)
                self.wake.wait(backoff)
                self.wake.clear()

    def _trouble(self, exc: Exception, backoff: float) -> None:
        """A round failed: say so (at most once a minute) and, if the host files failed
        (removed, damaged, full), go on with per-process state."""
        target = self.target
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + LOG_EVERY
            log.warning("recovery of %s failed (%s: %s); retrying in %.1f s",
                        target.location.describe(), type(exc).__name__, exc, backoff,
                        exc_info=not isinstance(exc, (OSError, sqlite3.Error)))
        if isinstance(exc, (OSError, sqlite3.Error)) and not _out_of_descriptors():
            try:
                target.degrade(exc)
            except Exception:  # the next round tries again
                log.debug("degrading %s failed", target.location.describe(),
                          exc_info=True)


def _out_of_descriptors() -> bool:
    """Whether this process cannot open a file now (EMFILE/ENFILE: a passing shortage, not a
    reason to leave the host's state)."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM)
    return False


_all: weakref.WeakSet[Recovery] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for recovery in list(_all):
        recovery.after_fork()


at_fork_child(_after_fork_in_child, 40)
