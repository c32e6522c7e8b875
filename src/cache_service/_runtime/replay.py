"""Recovery as an operation: reach Redis, replay the outage journal, close the breaker.
``Recovery`` (``recovery``) runs ``probe`` in the background while the breaker is open.
"""

from __future__ import annotations

import logging
import time

from cache_service._host.breaker import Breaker
from cache_service._host.shared_store import SharedStore
from cache_service._host.state import GEN
from cache_service._ops.protocol import Op, Unavailable
from cache_service._ops.requests import Call
from cache_service._redis.backend import diagnose, drop_idle, refresh_topology
from cache_service._runtime.drivers import Drivers
from cache_service.stats import add

log = logging.getLogger("cache_service")

__all__ = ["Replay"]


class Replay(Drivers):
    """The recovery probe of a target."""

    def probe(self) -> bool:
        """Reach Redis, replay the journal, close the breaker (run by ``Recovery``); True when
        the breaker is closed afterwards. After a failure that looked like an outage, ask
        whether it is a TLS mismatch (at most every few seconds: it costs a connect)."""
        if self.run(self._recover()):
            return True
        now = time.monotonic()
        if self.misconfiguration is None and now >= self._next_diagnosis:
            self._next_diagnosis = now + 5.0
            message = diagnose(self.location, self.options)
            if message is not None:
                self._misconfigured(message)
        return False

    def _recover(self) -> Op[bool]:
        replayed = 0
        started = self.breaker.outage_started
        try:
            yield Call(drop_idle)
            yield Call(refresh_topology)  # cluster slots, Sentinel's primary; else nothing
            yield self.ping_request
            if self.misconfiguration is not None:
                log.info("Redis at %s accepts us again", self.location.describe())
                self.misconfiguration = None
            self.breaker.draining()
            while True:
                plan = self.journal.plan()
                if not plan:
                    if self.breaker.close_if(lambda: len(self.journal) == 0):
                        break
                    if not self.breaker.is_open:
                        return True
                    if self.breaker.state != Breaker.DRAINING:
                        return False
                    continue
                for work in plan:
                    if work.pattern is None:
                        yield from self.unlink_keys(list(work.keys))
                    else:
                        yield from self.scan_unlink(work.pattern)
                    self.journal.done(work)
                    replayed += len(work.rows)
        except Unavailable:
            return False
        dropped = len(self.fallback)
        if isinstance(self.fallback, SharedStore):
            self.fallback.purge()
        self._observe(self._page[GEN])
        self.journal.expire_tombstones()
        next(self.counters.replays)
        add(self.counters.entries_dropped, dropped)
        log.info(
            "Redis at %s is back%s; replayed %d invalidation(s), dropped %d fallback entr%s",
            self.location.describe(),
            f" after {time.time() - started:.1f}s" if started else "", replayed, dropped,
            "y" if dropped == 1 else "ies",
        )
        return True
