"""The ready-made services of the usage contract (sync in ``instances``, async in ``aio``):
their prefixes and TTLs, and how each is made once, on first use, never at import."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["READY_MADE", "make_once"]

S = TypeVar("S")

# name -> (prefix, default TTL in seconds)
READY_MADE = {"api_cache": ("api", 300), "user_cache": ("user", 600),
              "session_cache": ("session", 1800)}
_lock = threading.Lock()


def make_once(namespace: dict[str, Any], module: str, name: str,
              factory: Callable[..., S]) -> S:
    """The ready-made service ``name`` of ``module`` (its globals: ``namespace``), made with
    ``factory`` the first time it is asked for (threads wait for one maker); a module's
    ``__getattr__`` for any other name raises AttributeError."""
    if name not in READY_MADE:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    with _lock:
        made: S | None = namespace.get(name)
        if made is None:
            prefix, ttl = READY_MADE[name]
            made = namespace[name] = factory(prefix, default_ttl=ttl,
                                             _defer_location_error=True)
        return made
