"""Two views: one cached whole by ``cache_page``, one using the low-level cache API."""

from __future__ import annotations

import itertools
import time

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import cache_page

_renders = itertools.count(1)


@cache_page(60)
def report(request: HttpRequest) -> HttpResponse:
    """An expensive page: rendered once a minute, served from the cache in between."""
    return HttpResponse(f"report #{next(_renders)} rendered at {time.time():.3f}")


def visits(request: HttpRequest, page: str) -> JsonResponse:
    """Counts visits per page (``add`` + ``incr``) and keeps the last visitor's agent."""
    key = f"visits:{page}"
    cache.add(key, 0, timeout=None)  # None: keep forever
    try:
        count = cache.incr(key)
    except ValueError:  # expired or cleared between add and incr
        cache.set(key, 1, timeout=None)
        count = 1
    cache.set(f"agent:{page}", request.headers.get("User-Agent", "?"), timeout=3600)
    return JsonResponse({"page": page, "visits": count,
                         "last_agent": cache.get(f"agent:{page}")})
