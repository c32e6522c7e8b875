"""Background loads: bounded, counted, logged, fork-safe.

``get_or_set`` hands a load to the background when its caller must not wait for it: a load
past ``soft_timeout``/``hard_timeout`` goes on after the caller left, and an eager refresh
never had a caller waiting. A blocking caller's load runs on a thread of its own (with the
caller's ``contextvars``), an asyncio caller's as a task on the caller's loop.

At most ``limit`` loads run at once per process (threads and tasks together): one more is
refused (``start`` returns False and the caller loads as if there were no background) and
counted (``background_refused``). A load that raises is counted (``background_errors``) and
logged, at most once per ``INTERVAL`` with how many more failed meanwhile, its key only as
``keys.redact`` shows it. After ``fork()`` the child starts with no load running (the
parent's threads do not exist there; its tasks are on the parent's loop).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from cache_service.forking import at_fork_child
from cache_service.stats import TargetCounters

__all__ = ["INTERVAL", "LIMIT", "RUNNER", "Background"]

log = logging.getLogger("cache_service")
LIMIT = 64  # loads running at once in one process
INTERVAL = 10.0  # seconds between two warnings about failed background loads


class Background:
    """Runs loads nobody waits for, at most ``limit`` at once."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._running = 0
        self._tasks: set[asyncio.Task[Any]] = set()  # strong references until done
        self._last_said = -INTERVAL
        self._unsaid = 0

    @property
    def running(self) -> int:
        """Loads running now (threads and tasks)."""
        return self._running

    def _take(self, counters: TargetCounters) -> bool:
        with self._lock:
            if self._running >= self.limit:
                refused = True
            else:
                refused = False
                self._running += 1
        next(counters.background_refused if refused else counters.background_loads)
        return not refused

    def _release(self) -> None:
        with self._lock:
            self._running -= 1

    def start(self, run: Callable[[], Any], counters: TargetCounters, label: str) -> bool:
        """Run ``run()`` on a new daemon thread; False (and counted) if ``limit`` loads run."""
        if not self._take(counters):
            return False
        context = contextvars.copy_context()

        def main() -> None:
            try:
                context.run(run)
            except BaseException as exc:  # a background load never dies silently
                self.failed(exc, counters, label)
            finally:
                self._release()

        try:
            threading.Thread(target=main, name="cache_service-load", daemon=True).start()
        except BaseException:  # no thread to be had (RuntimeError at shutdown...)
            self._release()
            raise
        return True

    def astart(self, run: Coroutine[Any, Any, Any], counters: TargetCounters,
               label: str) -> bool:
        """Run ``run`` as a task on the running loop; False (and counted) if ``limit`` loads
        run (``run`` is then closed unstarted)."""
        if not self._take(counters):
            run.close()
            return False
        try:
            task = asyncio.get_running_loop().create_task(run)
        except BaseException:
            self._release()
            run.close()
            raise
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, counters, label))
        return True

    def _finished(self, task: asyncio.Task[Any], counters: TargetCounters, label: str) -> None:
        self._tasks.discard(task)
        self._release()
        if task.cancelled():  # its loop shut down: the flight was handed back to waiters
            return
        exc = task.exception()
        if exc is not None:
            self.failed(exc, counters, label)

    def failed(self, exc: BaseException, counters: TargetCounters, label: str) -> None:
        """Count a failed background load; log it unless one was logged < INTERVAL ago."""
        next(counters.background_errors)
        now = time.monotonic()
        with self._lock:
            if now - self._last_said < INTERVAL:
                self._unsaid += 1
                return
            self._last_said, unsaid, self._unsaid = now, self._unsaid, 0
        more = f"; {unsaid} more failed since the last warning" if unsaid else ""
        log.warning("a background load of %s failed (%s: %s); the cache "
                    "keeps what it had%s", label, type(exc).__name__, exc, more)

    def after_fork(self) -> None:
        """In a forked child: nothing of the parent's runs here."""
        self._lock = threading.Lock()
        self._running = 0
        self._tasks = set()


RUNNER = Background()
at_fork_child(RUNNER.after_fork, 40)
