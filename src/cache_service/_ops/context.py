"""The operation context: everything an operation may touch, built once per service.

Operations (``read``, ``write``, ``keyops``, ``batch``, ``incr``, ``get_or_set``)
take an ``OpContext`` and reach nothing else of the service: its key space, codec and
limits, its counters, its wall clock, and the per-location runtime (``target``: the gate,
the fallback store, the outage journal, key removal, the near cache of the location).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cache_service._ops.tags import tag_key
from cache_service.codec import Codec
from cache_service.keys import KeySpace
from cache_service.stats import ServiceCounters

if TYPE_CHECKING:
    from cache_service._near.store import NearStore
    from cache_service._runtime.target import Target
    from cache_service.config import Location

__all__ = ["MISSING", "TTL", "UNCOUNTED", "OpContext"]

TTL = int | float | timedelta | None
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
UNCOUNTED = ServiceCounters()  # internal re-reads count nowhere


@dataclass(slots=True, eq=False)
class OpContext:
    """What operations of one service work with (public fields, fixed once built)."""

    keys: KeySpace
    head: str  # the prefix every full key starts with (``keys.head``, read by hot paths)
    codec: Codec
    plain: bool  # plain JSON payloads: a hit decodes with one ``orjson.loads``
    default_ttl: float
    max_value_bytes: int
    counters: ServiceCounters
    location: Location
    target: Target
    near: NearStore | None  # the location's near cache, if this service reads through it
    wall: Callable[[], float]  # wall time (stale-while-revalidate freshness, every host)
    # ``unpack`` of ``codec`` in fewer steps, for the get fast paths (a pipeline of stages)
    opener: Callable[[bytes, str], Any] | None = None

    def tag_keys(self, tags: tuple[str, ...] | list[str]) -> list[str]:
        """The Redis keys of ``tags`` (in the prefix's tag slot)."""
        prefix = self.keys.prefix
        return [tag_key(prefix, t) for t in tags]
