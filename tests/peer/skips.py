"""Peer-suite tests skipped per mode, each with the reason (the README lists them too).

Modes: ``up`` (Redis up), ``down`` (Redis refused from the start: memory fallback),
``restart`` (Redis killed and restarted during the run). Nothing else is skipped.
"""

from __future__ import annotations

DJANGO: dict[str, dict[str, str]] = {"up": {}, "down": {}, "restart": {}}
CACHELIB: dict[str, dict[str, str]] = {"up": {}, "down": {}, "restart": {}}
DOGPILE: dict[str, dict[str, str]] = {"up": {}, "down": {}, "restart": {}}

# django-ratelimit's CacheFailTests that use its "connection-errors" cache: a memcached cache
# in its settings (MemcachedCache is gone since Django 4.1, pymemcache is not installed); they
# test how ratelimit meets memcached failing, not the default cache. The django-redis one
# (test_is_ratelimited_cache_connection_error_with_increment_redis) runs.
_MEMCACHED = "its 'connection-errors' cache is memcached failing (not our backend)"
_RATELIMIT = {f"CacheFailTests.{name}": _MEMCACHED for name in (
    "test_limit_on_cache_connection_error", "test_fail_open_setting",
    "test_is_ratelimited_cache_connection_error_without_increment",
    "test_is_ratelimited_cache_connection_error_with_increment")}
# django-cachalot's test of its database checks expects no other warning of its own, but it
# warns (cachalot.W001) of every cache backend not on its list, ours too (silenced in
# projects with SILENCED_SYSTEM_CHECKS; this test calls run_checks, which does not filter)
_CACHALOT = {"SettingsTestCase.test_database_compatibility":
             "expects no cachalot.W001, which cachalot raises for any backend not on its list",
             # invalidate(), then get_last_invalidation() within 0.1 s of time(): a wall-clock
             # bound (0.1003 s on a machine at load 15; the project asserts no timings)
             "APITestCase.test_get_last_invalidation":
             "a 0.1 s wall-clock assertion, missed on a loaded machine"}
DJANGO_APPS: dict[str, dict[str, dict[str, str]]] = {
    "django-ratelimit": {"up": _RATELIMIT, "down": _RATELIMIT, "restart": _RATELIMIT},
    "django-cachalot": {"up": _CACHALOT, "down": _CACHALOT, "restart": _CACHALOT},
}
