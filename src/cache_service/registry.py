"""The live services of this process, for exporters (``integrations.prometheus``/``otel``).

Every ``CacheService``/``AsyncCacheService`` adds itself on construction; the registry holds
weak references only, so a service nobody uses any more leaves it when it is collected.
Reading it never touches Redis. It names no service type (``core`` imports this module), so
readers say what they read (``list[ServiceCore]``).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["add", "live_services"]

_services: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()


def add(service: object) -> None:
    """Register ``service`` (called by its constructor)."""
    with _lock:
        _services.add(service)


def live_services() -> list[Any]:
    """The services (``ServiceCore``) alive now (a copy: safe while others are built or
    collected)."""
    with _lock:
        return list(_services)
