"""Settings of the example Django project: its cache is DjangoCache on $CACHE_URL."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-secret-key-change-me")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_project.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
CACHES = {
    "default": {
        "BACKEND": "cache_service.integrations.django.DjangoCache",
        "LOCATION": os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/0"),
        "TIMEOUT": 300,
        "KEY_PREFIX": "example",
        # the signing key is derived from SECRET_KEY; timeouts etc. are service options
        "OPTIONS": {"socket_timeout": 0.25, "connect_timeout": 0.25},
    }
}
