"""dogpile.cache's ``_GenericBackendTestSuite`` and ``_GenericMutexTestSuite`` against the
``cache_service`` backend, as dogpile's own backend tests use them.

Collected only by ``run_pytest.py``; the URL and mode come from ``$PEER_URL`` / ``$PEER_MODE``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from dogpile.testing.fixtures import _GenericBackendTestSuite, _GenericMutexTestSuite

from tests.peer.skips import DOGPILE

URL, MODE = os.environ["PEER_URL"], os.environ["PEER_MODE"]
CONFIG: dict[str, Any] = {"arguments": {
    "url": URL, "signing_key": "peer-suite-signing-key", "lock_timeout": 5}}


class TestCacheServiceBackend(_GenericBackendTestSuite):
    backend = "cache_service"
    config_args = CONFIG


class TestCacheServiceMutex(_GenericMutexTestSuite):
    backend = "cache_service"
    config_args = CONFIG


for _name, _reason in DOGPILE.get(MODE, {}).items():
    _cls_name, _, _test = _name.partition(".")
    _cls = globals()[_cls_name]
    setattr(_cls, _test, pytest.mark.skip(reason=_reason)(getattr(_cls, _test)))
