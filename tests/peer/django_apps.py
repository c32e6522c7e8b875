"""Settings and test labels of the popular Django apps whose own suites run on DjangoCache
(``run_django_app.py``): each app's own test settings, with ``CACHES["default"]`` ours.

Loaded by file path, not as ``tests.peer...``: DRF's and django-axes' suites are packages
named ``tests`` themselves. Only loopback URLs the harness gives are used; a peer cache that
upstream points at a shared server (Redis on 6379, memcached) is left out or pointed at a
temporary directory.
"""

from __future__ import annotations

import os
import runpy
import tempfile
from pathlib import Path
from typing import Any

BACKEND = "cache_service.integrations.django.DjangoCache"
# the apps' test settings have short SECRET_KEYs; a project gives the cache its own key
SIGNING_KEY = "peer-django-apps-signing-key-0123456789"
# The app's test modules: the whole suite, or (named in the README) its cache-relevant part.
LABELS = {
    "django-ratelimit": ["django_ratelimit.tests"],
    "djangorestframework": ["tests.test_throttling"],
    "django-axes": ["tests.test_handlers"],
    # cachalot.tests but its debug-toolbar (a LiveServerTestCase on bs4) and PostgreSQL ones
    "django-cachalot": [f"cachalot.tests.{name}" for name in (
        "read", "write", "transaction", "thread_safety", "multi_db", "settings", "api",
        "signals")],
}
# System checks each app adds about the cache: what the check says of our backend
CHECKS = {"django-ratelimit": "django_ratelimit.W001", "django-cachalot": "cachalot.W001"}


def ours(url: str) -> dict[str, Any]:
    return {"BACKEND": BACKEND, "LOCATION": url, "OPTIONS": {"SIGNING_KEY": SIGNING_KEY}}


def settings_for(app: str, suite_dir: str, url: str) -> dict[str, Any]:
    """``settings.configure`` arguments for ``app``'s suite, on ``url``."""
    return {"django-ratelimit": _ratelimit, "djangorestframework": _drf,
            "django-axes": _axes, "django-cachalot": _cachalot}[app](Path(suite_dir), url)


def _ratelimit(suite: Path, url: str) -> dict[str, Any]:
    """django-ratelimit's test_settings.py (in its repository, not its sdist), as it is."""
    return {
        "SECRET_KEY": "ratelimit",
        "RATELIMIT_USE_CACHE": "default",
        "CACHES": {
            "default": ours(url),
            # CacheFailTests' caches: other backends' failures (see skips.py)
            "connection-errors-redis": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://test-connection-errors",
                "OPTIONS": {"IGNORE_EXCEPTIONS": True}},
            "instant-expiration": {"BACKEND": "django.core.cache.backends.dummy.DummyCache",
                                   "LOCATION": "test-instant-expiration"},
        },
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        "INSTALLED_APPS": ["django.contrib.auth", "django.contrib.contenttypes",
                           "django.contrib.sessions", "django.contrib.sites",
                           "django.contrib.messages", "django.contrib.admin",
                           "django_ratelimit"],
        "MIDDLEWARE": ["django.middleware.common.CommonMiddleware",
                       "django.contrib.sessions.middleware.SessionMiddleware",
                       "django.contrib.auth.middleware.AuthenticationMiddleware",
                       "django.contrib.messages.middleware.MessageMiddleware"],
        "TEMPLATES": _TEMPLATES,
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
    }


def _drf(suite: Path, url: str) -> dict[str, Any]:
    """What DRF's tests/conftest.py configures (SQLite in memory)."""
    memory = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    return {
        "DEBUG_PROPAGATE_EXCEPTIONS": True, "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "DATABASES": {"default": memory, "secondary": dict(memory)}, "SITE_ID": 1,
        "SECRET_KEY": "not very secret in tests", "USE_I18N": True, "STATIC_URL": "/static/",
        "ROOT_URLCONF": "tests.urls",
        "TEMPLATES": [{"BACKEND": "django.template.backends.django.DjangoTemplates",
                       "APP_DIRS": True, "OPTIONS": {"debug": True}}],
        "MIDDLEWARE": ("django.middleware.common.CommonMiddleware",
                       "django.contrib.sessions.middleware.SessionMiddleware",
                       "django.contrib.auth.middleware.AuthenticationMiddleware",
                       "django.contrib.messages.middleware.MessageMiddleware"),
        "INSTALLED_APPS": ("django.contrib.admin", "django.contrib.auth",
                           "django.contrib.contenttypes", "django.contrib.sessions",
                           "django.contrib.sites", "django.contrib.staticfiles",
                           "rest_framework", "rest_framework.authtoken",
                           "tests.authentication", "tests.generic_relations",
                           "tests.importable", "tests"),
        "PASSWORD_HASHERS": ("django.contrib.auth.hashers.MD5PasswordHasher",),
        "CACHES": {"default": ours(url)},
    }


def _axes(suite: Path, url: str) -> dict[str, Any]:
    """django-axes' tests/settings.py, with the cache ours."""
    found = runpy.run_path(str(suite / "tests" / "settings.py"))
    values = {k: v for k, v in found.items() if k.isupper()}
    values["CACHES"] = {"default": ours(url)}
    values["LOGGING"] = {"version": 1, "disable_existing_loggers": False}
    return values


def _cachalot(suite: Path, url: str) -> dict[str, Any]:
    """django-cachalot's settings.py (SQLite, its locmem default cache) with the default
    cache ours; its Redis (on 6379) and memcached caches are left out, its file cache and
    SQLite database go to a temporary directory, its Jinja2 and PostgreSQL parts go when
    those are not installed."""
    os.environ.update(DB_ENGINE="sqlite3", CACHE_BACKEND="locmem")
    found = runpy.run_path(str(suite / "settings.py"))
    values = {k: v for k, v in found.items() if k.isupper()}
    tmp = tempfile.mkdtemp(prefix="peer-cachalot-")
    # two databases, as upstream's settings have (its multi-database tests need a second)
    values["DATABASES"] = {alias: {
        "ENGINE": "django.db.backends.sqlite3", "NAME": f"{tmp}/{alias}.sqlite3",
        "TEST": {"NAME": f"{tmp}/test_{alias}.sqlite3"}} for alias in ("default", "second")}
    locmem = values["CACHES"]["default"]
    values["CACHES"] = {
        "default": ours(url), "locmem": locmem,
        "filebased": {**values["CACHES"]["filebased"], "LOCATION": f"{tmp}/django_cache"}}
    values["INSTALLED_APPS"] = [a for a in values["INSTALLED_APPS"]
                                if a != "django.contrib.postgres"]
    try:
        import jinja2  # noqa: F401
    except ImportError:
        values["TEMPLATES"] = [t for t in values["TEMPLATES"] if "jinja2" not in t["BACKEND"]]
    values["ROOT_URLCONF"] = "runtests_urls"
    values.pop("DEBUG_TOOLBAR_CONFIG", None)
    values.pop("DEBUG_TOOLBAR_PANELS", None)
    values["INSTALLED_APPS"] = [a for a in values["INSTALLED_APPS"] if a != "debug_toolbar"]
    values["MIDDLEWARE"] = [m for m in values.get("MIDDLEWARE", []) if "debug_toolbar" not in m]
    values["DATABASE_ROUTERS"] = ["peer_django_apps.NoPostgresModel"]
    values["TMP"] = tmp
    # its loaddata test names its fixture relative to the source tree's root
    values["CHDIR"] = str(Path(__import__("cachalot").__file__).parents[1])
    return values


class NoPostgresModel:
    """cachalot's router sends its PostgreSQL-only model to a ``postgresql`` database, else to
    ``default``: with SQLite only, that model's table (and the hstore/unaccent extensions)
    must not be created nor serialized anywhere."""

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None,
                      **hints: Any) -> bool | None:
        if hints.get("extension") in ("hstore", "unaccent") or model_name == "postgresmodel":
            return False
        return None


_TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.debug",
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages"]},
}]
