"""What a forked child must not inherit: one ordered at-fork handler for the whole package.

After ``fork()`` only the forking thread exists in the child. A lock another thread of the
parent held stays held for ever, a load it was leading never lands, its sockets and threads are
the parent's. In the child, before anything else runs, this module:

1. renews every lock and event at module level in ``cache_service`` and its submodules (one new
   lock per old one, so two modules naming the same lock still share it);
2. runs the resets registered with ``at_fork_child``, lowest ``order`` first: flights and
   stamps (10), host state: descriptors and SQLite (20), targets: locks, clients, per-loop
   clients, and the ``_wire`` connections (30), threads: recovery and tracking (40), near
   caches (50).

A reset that fails is logged and the others still run: the child goes on without that part.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["at_fork_child", "renew_locks"]

log = logging.getLogger("cache_service")

_LOCK = type(threading.Lock())
_RLOCK = type(threading.RLock())
_handlers: list[tuple[int, int, Callable[[], None]]] = []
# During one child's resets: id(lock) -> (that lock, its replacement); the old one is kept
# so that its id is not reused before the pass ends.
_renewed: dict[int, tuple[object, Any]] = {}


def at_fork_child(reset: Callable[[], None], order: int) -> None:
    """Run ``reset`` in every child forked from now on (after the resets of lower order)."""
    _handlers.append((order, len(_handlers), reset))


def renew_locks(*objects: object) -> None:
    """Replace every lock, re-entrant lock and event held by an attribute of ``objects`` with
    a fresh one (an event keeps whether it was set). For at-fork resets only."""
    for obj in objects:
        names = list(getattr(obj, "__dict__", {}))
        for cls in type(obj).__mro__:
            slots = cls.__dict__.get("__slots__", ())
            names.extend((slots,) if isinstance(slots, str) else slots)
        for name in names:
            value = getattr(obj, name, None)
            fresh = _fresh(value)
            if fresh is not None:
                setattr(obj, name, fresh)


def _fresh(value: object) -> Any:
    if not isinstance(value, _LOCK | _RLOCK | threading.Event):
        return None
    known = _renewed.get(id(value))
    if known is not None:  # renewed once per fork, whoever else names it
        return known[1]
    fresh: Any
    if isinstance(value, threading.Event):
        fresh = threading.Event()
        if value.is_set():
            fresh.set()
    else:
        fresh = threading.Lock() if isinstance(value, _LOCK) else threading.RLock()
    _renewed[id(value)] = (value, fresh)
    _renewed[id(fresh)] = (fresh, fresh)
    return fresh


def _after_fork_in_child() -> None:
    _renewed.clear()
    try:
        for name, module in list(sys.modules.items()):
            if name == "cache_service" or name.startswith("cache_service."):
                renew_locks(module)
        for _, _, reset in sorted(_handlers, key=lambda h: (h[0], h[1])):
            try:
                reset()
            except Exception:  # one part failing must not keep the others from their reset
                log.exception("resetting %r after fork failed", reset)
    finally:
        _renewed.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
