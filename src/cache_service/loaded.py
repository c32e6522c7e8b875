"""``Loaded``: what a loader returns to choose how its value is cached ("adaptive caching").

A loader of ``get_or_set`` or ``@cached`` may return ``Loaded(value, ttl=..., tags=...,
cache=...)`` instead of the bare value: the caller gets ``value``; the cache stores it for
``ttl`` with ``tags`` (each ``None``: the call's own), or not at all with ``cache=False``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from cache_service._ops.tags import validate_tags
from cache_service.config import ttl_seconds
from cache_service.errors import ConfigurationError

__all__ = ["Loaded"]


class Loaded:
    """A loaded value with its own caching terms (validated when built)."""

    __slots__ = ("cache", "tags", "ttl", "value")

    def __init__(self, value: Any, *, ttl: float | timedelta | None = None,
                 tags: Iterable[str] | None = None, cache: bool = True) -> None:
        if ttl is not None:
            ttl_seconds(ttl, "Loaded(ttl=...)")
        if not isinstance(cache, bool):
            raise ConfigurationError(f"Loaded(cache=...) must be True or False, got {cache!r}")
        self.value = value
        self.ttl = ttl
        self.tags: tuple[str, ...] | None = None if tags is None else validate_tags(tags)
        self.cache = cache

    def __repr__(self) -> str:
        return f"Loaded({self.value!r}, ttl={self.ttl!r}, tags={self.tags!r}, cache={self.cache})"
