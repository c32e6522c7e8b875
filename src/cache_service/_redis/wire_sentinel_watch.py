"""Following ``+switch-master``: one background thread per Sentinel service in this process,
subscribed on one sentinel at a time, that tells every book of that service the new primary.

Without it a switch is followed when the old primary fails or answers READONLY; with it,
within milliseconds of the sentinels' announcement, even while a gracefully demoted primary
still accepts writes (``SENTINEL FAILOVER`` leaves it a primary for ~10 s: writes sent there
meanwhile are lost). The subscription uses redis-py's public ``PubSub`` (off the data path).
A sentinel that fails, or stays silent and then does not answer a PING, is left for the next. The
thread stops when the last book of its service is gone (closed clients unregister theirs)
and is started again in a forked child on its next use.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any

import redis

from cache_service._redis.wire_sentinel import Address, SentinelBook, SentinelPlan

__all__ = ["switched_to", "unwatch", "watch"]

log = logging.getLogger("cache_service")

CHANNEL = "+switch-master"
_HEALTH_CHECK = 2.0  # seconds of silence before the sentinel must answer a PING
_BACKOFF = (0.1, 2.0)  # between attempts on the next sentinel: first, most


def switched_to(plan: SentinelPlan, data: object) -> Address | None:
    """The new primary in a ``+switch-master`` message for ``plan``'s service, else None.
    (``<name> <old ip> <old port> <new ip> <new port>``.)"""
    text = data.decode() if isinstance(data, bytes) else str(data)
    parts = text.split()
    if len(parts) != 5 or parts[0] != plan.service_name or not parts[4].isdigit():
        return None
    return parts[3], int(parts[4])


class _Watcher:
    """The thread of one service: the books to tell, and a stop flag."""

    def __init__(self, plan: SentinelPlan) -> None:
        self.plan = plan
        self.books: weakref.WeakSet[SentinelBook] = weakref.WeakSet()
        self.stop = threading.Event()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"cache-service-sentinel-watch-{plan.service_name}")

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.thread.is_alive() and not self.stop.is_set()

    def _run(self) -> None:
        index, backoff = 0, _BACKOFF[0]
        while not self.stop.is_set() and len(self.books):
            settings = self.plan.sentinels[index % len(self.plan.sentinels)]
            try:
                self._listen(settings.host, settings.port, settings.password,
                             settings.connect_timeout, settings.request_timeout)
                backoff = _BACKOFF[0]
            except Exception as exc:  # this sentinel failed: the next one, after a pause
                log.debug("+switch-master subscription on %s failed: %s",
                          settings.where, exc)
                index += 1
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF[1])

    def _listen(self, host: str, port: int, password: str | None, connect_timeout: float,
                timeout: float) -> None:
        client = redis.Redis(host=host, port=port, password=password,
                             socket_connect_timeout=connect_timeout, socket_timeout=timeout)
        pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL)
            heard, pinged = time.monotonic(), 0.0
            while not self.stop.is_set() and len(self.books):
                message = pubsub.get_message(timeout=0.5)
                now = time.monotonic()
                if message is None:
                    if pinged and now - pinged > timeout + 0.5:  # a hung sentinel
                        raise TimeoutError(f"{host}:{port} did not answer PING")
                    if not pinged and now - heard > _HEALTH_CHECK:
                        pubsub.ping()
                        pinged = now
                    continue
                heard, pinged = now, 0.0
                if message.get("type") != "message":
                    continue
                address = switched_to(self.plan, message.get("data"))
                if address is not None:
                    log.info("the sentinels switched %s to %s:%s",
                             self.plan.service_name, *address)
                    for book in list(self.books):
                        book.switched(address)
        finally:
            pubsub.close()
            client.close()


_watchers: dict[SentinelPlan, _Watcher] = {}
_lock = threading.Lock()


def watch(plan: SentinelPlan, book: SentinelBook) -> None:
    """Tell ``book`` of ``plan``'s switches from now on (starting the service's thread)."""
    with _lock:
        watcher = _watchers.get(plan)
        if watcher is None or not watcher.alive():
            watcher = _watchers[plan] = _Watcher(plan)
            watcher.books.add(book)
            watcher.thread.start()
        else:
            watcher.books.add(book)


def unwatch(plan: SentinelPlan, book: SentinelBook) -> None:
    """Stop telling ``book``; the thread ends with the service's last book."""
    with _lock:
        watcher = _watchers.get(plan)
        if watcher is None:
            return
        watcher.books.discard(book)
        if not len(watcher.books):
            watcher.stop.set()
            del _watchers[plan]
