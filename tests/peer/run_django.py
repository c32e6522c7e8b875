"""Run Django's own ``BaseCacheTests`` against DjangoCache, in this process; JSON on stdout.

``python tests/peer/run_django.py SUITE_DIR URL MODE`` - the way Django's ``RedisCacheTests``
subclass the mixin (same caches, minus the ``cull`` ones Django excludes for Redis), with the
skips of ``MODE`` (``up``, ``down``, ``restart``) from ``tests/peer/skips.py``.
"""

from __future__ import annotations

import json
import sys
import unittest

suite_dir, url, mode = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, suite_dir)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

BACKEND = "cache_service.integrations.django.DjangoCache"
PARAMS = {"BACKEND": BACKEND, "LOCATION": url}  # default options: fallback="host"
settings.configure(
    DEBUG=False,
    SECRET_KEY="peer-suite-secret-key-not-for-production",
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cache"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CACHES={"default": PARAMS},
    USE_TZ=True,
    MIDDLEWARE=[],
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()

from cache import tests as peer  # type: ignore[import-not-found]  # noqa: E402
from django.test import TestCase, override_settings  # noqa: E402
from django.test.utils import get_runner  # noqa: E402

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from tests.peer.skips import DJANGO  # noqa: E402


@override_settings(CACHES=peer.caches_setting_for_tests(
    base=PARAMS, exclude=peer.redis_excluded_caches))
class CacheServiceDjangoTests(peer.BaseCacheTests, TestCase):
    """BaseCacheTests as RedisCacheTests runs it; incr on a non-int raises our TypeError."""


for name, reason in DJANGO.get(mode, {}).items():
    setattr(CacheServiceDjangoTests, name, unittest.skip(reason)(
        getattr(CacheServiceDjangoTests, name)))

runner = get_runner(settings)(verbosity=0, interactive=False)
runner.setup_test_environment()
old = runner.setup_databases()
tests = unittest.defaultTestLoader.loadTestsFromTestCase(CacheServiceDjangoTests)
failed_once: list[str] = []
result = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(tests)
if mode == "restart" and (result.failures or result.errors):
    # a test that straddled a kill or restart of the server is run once more (see README)
    again = unittest.TestSuite()
    for case, _ in result.failures + result.errors:
        failed_once.append(case.id().rsplit(".", 1)[-1])
        again.addTest(CacheServiceDjangoTests(case.id().rsplit(".", 1)[-1]))
    rerun = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(again)
    result.failures, result.errors = rerun.failures, rerun.errors
runner.teardown_databases(old)
runner.teardown_test_environment()
print(json.dumps({
    "run": result.testsRun,
    "failures": [(c.id(), tb) for c, tb in result.failures],
    "errors": [(c.id(), tb) for c, tb in result.errors],
    "skipped": [(c.id().rsplit(".", 1)[-1], r) for c, r in result.skipped],
    "rerun": failed_once,
}))
