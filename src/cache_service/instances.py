"""Ready-made services of the usage contract; they follow ``REDIS_URL`` and connect lazily.

Each is made on first use (``from cache_service import api_cache`` or an attribute access), not
at import: a service fixes the options of its location's target for the whole process, and an
app that never uses these must not find its own ``fallback=``/``state_dir=`` on ``REDIS_URL``
overridden by them. A bad ``REDIS_URL`` does not make the import fail: the services raise its
ConfigurationError on first use instead (see ``unconfigured.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cache_service.ready_made import make_once
from cache_service.service import CacheService

__all__ = ["api_cache", "session_cache", "user_cache"]

if TYPE_CHECKING:
    api_cache: CacheService
    user_cache: CacheService
    session_cache: CacheService


def __getattr__(name: str) -> CacheService:
    """Make the ready-made service ``name`` once, on first use."""
    return make_once(globals(), __name__, name, CacheService)
