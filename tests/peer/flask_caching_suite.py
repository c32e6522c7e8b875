"""Flask-Caching's own tests against our backend, built by Flask-Caching from
``CACHE_TYPE = "cache_service.integrations.flask.make_cache"``.

Collected only by ``run_pytest.py`` (the name does not match ``test_*``); the URL and mode
come from ``$PEER_URL`` / ``$PEER_MODE``. Every test function of Flask-Caching's test modules
is collected here with its module's marks; its ``app`` fixture is replaced by one configuring
our backend (the only change). ``test_backend_cache``'s classes for Flask-Caching's own
backends are replaced by one class running its ``GenericCacheTests`` on ours, as its
``TestRedisCache`` does on its RedisCache (see ``skips.FLASK_CACHING_REPLACED``).
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
import pytest

import conftest as peer_conftest  # type: ignore[import-not-found]
from cache_service.integrations.flask import make_cache
from conftest import cache, clock, hash_method  # type: ignore[import-not-found]  # noqa: F401
from tests.peer.skips import FLASK_CACHING, FLASK_CACHING_REPLACED

URL, MODE = os.environ["PEER_URL"], os.environ["PEER_MODE"]
FACTORY = "cache_service.integrations.flask.make_cache"
SIGNING_KEY = "peer-suite-signing-key"
NAMES = ("test_backend_cache", "test_basic_app", "test_cache", "test_cachelib", "test_hash_method",
         "test_init", "test_memoize", "test_py314_annotations", "test_serializer", "test_signals",
         "test_subclassing", "test_templates", "test_view")
_FOUND = {path.stem for path in Path(peer_conftest.__file__).parent.glob("test_*.py")}
assert set(NAMES) == _FOUND, f"Flask-Caching's test modules changed: {sorted(_FOUND ^ set(NAMES))}"
MODULES: tuple[ModuleType, ...] = tuple(importlib.import_module(name) for name in NAMES)


def _config() -> dict[str, Any]:
    """Our backend's settings; a key prefix per test stands in for a fresh SimpleCache."""
    return {"CACHE_TYPE": FACTORY, "CACHE_REDIS_URL": URL,
            "CACHE_KEY_PREFIX": f"fc-{uuid.uuid4().hex[:12]}:",
            "CACHE_SIGNING_KEY": SIGNING_KEY}


@pytest.fixture
def app(request: Any) -> flask.Flask:
    """Flask-Caching's ``app`` fixture with our backend in place of ``SimpleCache``."""
    made = flask.Flask(request.module.__name__,
                       template_folder=os.path.dirname(peer_conftest.__file__))
    made.testing = True
    made.config.update(_config())
    return made


class TestCacheServiceBackend(MODULES[0].GenericCacheTests):  # type: ignore[misc,name-defined]
    """Flask-Caching's generic backend tests on ours; real sleeps (Redis keeps the time)."""

    _can_use_fast_sleep = False

    @pytest.fixture
    def make_cache(self) -> Callable[..., Any]:
        def build(**kwargs: Any) -> Any:
            holder = flask.Flask("peer-flask-caching")
            return make_cache(holder, {**holder.config, **_config()}, [],
                              {"default_timeout": 300, **kwargs})
        return build


def _is_fixture(obj: object) -> bool:
    return type(obj).__name__ == "FixtureFunctionDefinition"  # no attribute reads: a proxy


def _collect() -> None:
    """Flask-Caching's test functions (each with its module's marks) and module fixtures into
    this module; ``app`` stays ours (test_init's bare-app fixture too: its tests set their
    own ``CACHE_TYPE``)."""
    here = globals()
    for module in MODULES:
        marks = getattr(module, "pytestmark", [])
        marks = marks if isinstance(marks, list) else [marks]
        for name, obj in vars(module).items():
            if name.startswith("Test") and name not in FLASK_CACHING_REPLACED:
                raise AssertionError(f"{module.__name__}.{name}: not composed here (new in "
                                     "this Flask-Caching version?)")
            if _is_fixture(obj) and name != "app":
                assert here.get(name, obj) is obj, f"two Flask-Caching fixtures named {name}"
                here[name] = obj
            elif name.startswith("test_") and callable(obj):
                assert name not in here, f"two Flask-Caching tests named {name}"
                test = obj
                for mark in marks:
                    test = mark(test)
                skip = FLASK_CACHING.get(MODE, {}).get(name)
                here[name] = pytest.mark.skip(reason=skip)(test) if skip else test


@pytest.fixture(autouse=True)
def _skip_listed_parameters(request: Any) -> None:
    """A skip listed for one parametrization (``test_x[param]``)."""
    reason = FLASK_CACHING.get(MODE, {}).get(request.node.name)
    if reason and "[" in request.node.name:
        pytest.skip(reason)


_collect()
