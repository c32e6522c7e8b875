"""Background recovery: one daemon thread per target probes Redis while the breaker is open.

Callers never probe, so an outage, a hang or a misconfiguration costs them nothing: they are
on the fallback until the breaker closes. Of a host's processes, the one holding the
location's recovery flock probes (with the breaker's backoff) and replays the shared journal;
the others only poll, to take over if it exits. The thread ends when the breaker closes and
is started again by the next outage; a forked child starts its own.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

from .forking import at_fork_child, renew_locks

if TYPE_CHECKING:
    from .target import Target

__all__ = ["Recovery"]

log = logging.getLogger("cache_service")


class Recovery:
    """Runs ``target.probe()`` in the background until the breaker is closed."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._lock = threading.Lock()
        self.running = False  # read without the lock by every call during an outage
        self.wake = threading.Event()
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
        name = f"cache_service-recovery-{self.target.location.describe()}"
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        target = self.target
        backoff = target.breaker.min_backoff
        next_try = time.monotonic() + backoff
        while True:
            breaker = target.breaker  # re-read: a failing disk can swap the host state
            host = breaker.host
            with self._lock:
                if not breaker.is_open:
                    self.running = False
                    return
            if not host.try_recovery():  # another process of this host recovers
                self.wake.wait(min(breaker.min_backoff, 0.25))
                continue
            try:
                while target.breaker is breaker and breaker.is_open:
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
            except Exception:  # never let the thread die silently: log and try again later
                log.exception("cache_service: recovery of %s failed",
                              target.location.describe())
                next_try = time.monotonic() + breaker.max_backoff
            finally:
                host.end_recovery()


_all: weakref.WeakSet[Recovery] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for recovery in list(_all):
        recovery.after_fork()


at_fork_child(_after_fork_in_child, 40)
