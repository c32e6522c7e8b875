"""Ready-made services of the usage contract; they follow ``REDIS_URL`` and connect lazily.

Each is made on first use (``from cache_service import api_cache`` or an attribute access), not
at import: a service fixes the options of its location's target for the whole process, and an
app that never uses these must not find its own ``fallback=``/``state_dir=`` on ``REDIS_URL``
overridden by them. A bad ``REDIS_URL`` does not make the import fail: the services raise its
ConfigurationError on first use instead (see ``unconfigured.py``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from cache_service.service import CacheService

__all__ = ["api_cache", "session_cache", "user_cache"]

# prefix and default TTL of each ready-made service
_MADE = {"api_cache": ("api", 300), "user_cache": ("user", 600),
         "session_cache": ("session", 1800)}
_lock = threading.Lock()

if TYPE_CHECKING:
    api_cache: CacheService
    user_cache: CacheService
    session_cache: CacheService


def __getattr__(name: str) -> CacheService:
    """Make the ready-made service ``name`` once (threads wait for one maker)."""
    if name not in _MADE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        made = globals().get(name)
        if made is None:
            prefix, ttl = _MADE[name]
            made = globals()[name] = CacheService(prefix, default_ttl=ttl,
                                                  _defer_location_error=True)
        return made
