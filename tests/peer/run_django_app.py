"""Run a Django app's own test suite (or its cache-relevant part) on DjangoCache, in this
process; JSON on stdout.

``python tests/peer/run_django_app.py APP SUITE_DIR URL MODE`` - APP's settings and test
labels from ``tests/peer/django_apps.py``, the skips of ``MODE`` (``up``, ``down``,
``restart``) from ``tests/peer/skips.py``; also reports what ``manage.py check`` says about
the cache (the app's own warning that our backend is not on its list).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import types
import unittest
from pathlib import Path
from typing import Any

app, suite_dir, url, mode = sys.argv[1:5]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [suite_dir, str(HERE.parents[1] / "src")]
# cachalot.tests imports its PostgreSQL tests (psycopg) and debug-toolbar test (bs4, a live
# server): neither is run here, so neither module is loaded
for name, case in (("postgres", "PostgresReadTestCase"), ("debug_toolbar", "DebugToolbarTestCase")):
    sys.modules[f"cachalot.tests.{name}"] = types.SimpleNamespace(  # type: ignore[assignment]
        **{case: unittest.TestCase})


def load(name: str) -> Any:
    """One of tests/peer's modules, by file path (DRF's and axes' suites are ``tests``)."""
    spec = importlib.util.spec_from_file_location(f"peer_{name}", HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # settings may name its classes (a database router)
    spec.loader.exec_module(module)
    return module


apps, skips = load("django_apps"), load("skips")
values = apps.settings_for(app, suite_dir, url)
tmp = values.pop("TMP", None)
if "CHDIR" in values:
    os.chdir(values.pop("CHDIR"))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(**values)
django.setup()

from django.core import checks  # noqa: E402
from django.test.utils import get_runner  # noqa: E402

check_ids = sorted({m.id for m in checks.run_checks(tags=[checks.Tags.caches])
                    if m.id is not None})

runner = get_runner(settings)(verbosity=0, interactive=False)
suite = runner.build_suite(apps.LABELS[app])
skipped_here = skips.DJANGO_APPS.get(app, {}).get(mode, {})


def flat(tests: unittest.TestSuite) -> list[unittest.TestCase]:
    out: list[unittest.TestCase] = []
    for test in tests:
        out.extend(flat(test) if isinstance(test, unittest.TestSuite) else [test])
    return out


for test in flat(suite):
    key = f"{type(test).__name__}.{test._testMethodName}"
    if key in skipped_here:
        setattr(type(test), test._testMethodName,
                unittest.skip(skipped_here[key])(getattr(type(test), test._testMethodName)))

runner.setup_test_environment()
old = runner.setup_databases()
if os.environ.get("PEER_SUITE_STARTED"):  # the harness's outages begin now
    Path(os.environ["PEER_SUITE_STARTED"]).touch()
result = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(suite)
failed_once: list[str] = []
if mode == "restart" and (result.failures or result.errors):
    # a test that straddled a kill or restart of the server is run once more (see README)
    again = unittest.TestSuite()
    for case, _ in result.failures + result.errors:
        failed_once.append(case.id())
        again.addTest(type(case)(case._testMethodName))  # type: ignore[attr-defined]
    rerun = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(again)
    result.failures, result.errors = rerun.failures, rerun.errors
runner.teardown_databases(old)
runner.teardown_test_environment()
if tmp:
    shutil.rmtree(tmp, ignore_errors=True)
print(json.dumps({
    "run": result.testsRun,
    "failures": [(c.id(), tb) for c, tb in result.failures],
    "errors": [(c.id(), tb) for c, tb in result.errors],
    "skipped": [(f"{type(c).__name__}.{c._testMethodName}", r)  # type: ignore[attr-defined]
                for c, r in result.skipped],
    "rerun": failed_once,
    "checks": check_ids,
}))
