"""Peer-suite tests skipped per mode, each with the reason (docs/guides/frameworks.md lists them).

Modes: ``up`` (Redis up), ``down`` (Redis refused from the start: memory fallback),
``restart`` (Redis killed and restarted during the run). Nothing else is skipped.
"""

from __future__ import annotations

DJANGO: dict[str, dict[str, str]] = {"up": {}, "down": {}, "restart": {}}
CACHELIB: dict[str, dict[str, str]] = {"up": {}, "down": {}, "restart": {}}
DOGPILE: dict[str, dict[str, str]] = {"up": {}, "down": {}, "restart": {}}

# Flask-Caching's test_backend_cache classes for its own backends: not run; one class runs
# their shared GenericCacheTests on ours instead (tests/peer/flask_caching_suite.py).
FLASK_CACHING_REPLACED: dict[str, str] = {
    "TestSimpleCache": "Flask-Caching's SimpleCache (its own backend; reads its _cache)",
    "TestFileSystemCache": "Flask-Caching's FileSystemCache (its own backend)",
    "TestRedisCache": "Flask-Caching's RedisCache on a redis-server it starts on port 6360",
    "TestRedisCacheClientsOverride": "Flask-Caching's RedisCache clients (its internals)",
    "TestMemcachedCache": "Flask-Caching's memcached backends on a memcached on port 11212",
    "TestNullCache": "Flask-Caching's NullCache (its own backend)",
}
_FC_CLOCK = ("advances the fake clock Flask-Caching's conftest patches into cachelib.simple "
             "and cachelib.file (SimpleCache's and FileSystemCache's internals) and expects "
             "expiry; Redis and our fallback keep real time (real-sleep expiry: "
             "GenericCacheTests.test_generic_timeout here, cachelib's suite)")
_FC_SERIALIZER = ("expects the backend to hold a cachelib `serializer` attribute that "
                  "CACHE_SERIALIZER replaces (cachelib's own backends' internals); ours "
                  "encodes with its codec (signed pickle, or json/msgpack via CACHE_OPTIONS), "
                  "and Flask-Caching warns that CACHE_SERIALIZER is not used")
_FC_REDIS = ("Flask-Caching's own RedisCache, on a redis-server its conftest starts on port "
             "6360 (another backend, and a port this suite does not own)")
_FC_BY_MODE: dict[str, str] = {
    "test_init_app_multi_apps": _FC_REDIS,
    "test_app_redis_cache_backend_url_default_db": _FC_REDIS,
    "test_app_redis_cache_backend_url_custom_db": _FC_REDIS,
    "test_app_redis_cache_backend_url_explicit_db_arg": _FC_REDIS,
    "test_cache_unlink": _FC_REDIS,
    "test_init_nullcache[MemcachedCache]": "builds Flask-Caching's MemcachedCache, which needs "
                                           "a memcached client library (another backend)",
    "test_cache_cached_function": _FC_CLOCK,
    "test_cache_accepts_multiple_ciphers": _FC_CLOCK,
    "test_memoize": _FC_CLOCK,
    "test_memoize_hashes": _FC_CLOCK,
    "test_memoize_timeout": _FC_CLOCK,
    "test_memoize_entry_written_late_keeps_its_own_timeout": _FC_CLOCK,
    "test_memoize_version_key_expires_once_its_entries_have": _FC_CLOCK,
    "test_cached_view": _FC_CLOCK,
    "test_cached_view_class": _FC_CLOCK,
    "test_cache_timeout_property": _FC_CLOCK,
    "test_cache_timeout_dynamic_via_cached_reponse": _FC_CLOCK,
    "test_hit_cache": _FC_CLOCK,
    "test_cached_view_http_exception_expires": _FC_CLOCK,
    "test_backend_uses_cachelib_serializer": _FC_SERIALIZER,
    "test_default_keeps_the_cachelib_serializer": _FC_SERIALIZER,
    "test_instance_is_used_as_is": _FC_SERIALIZER,
    "test_class_is_instantiated": _FC_SERIALIZER,
    "test_serializer_read_from_extension_config": _FC_SERIALIZER,
    "test_configured_serializer_is_used_for_get_and_set": _FC_SERIALIZER,
    "test_values_are_stored_in_the_configured_format":
        _FC_SERIALIZER + "; it also reads SimpleCache's private _cache",
}
FLASK_CACHING: dict[str, dict[str, str]] = {mode: dict(_FC_BY_MODE)
                                            for mode in ("up", "down", "restart")}
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
