"""Fixtures for operations driven over a script: a service core whose target never connects."""

from __future__ import annotations

import itertools
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from cache_service.core import ServiceCore

from .scripted import Make, ScriptedDriver

# Nothing listens here, and nothing tries: the scripted driver never asks the target for a
# client. Requests and their replies are the test's script.
NOWHERE = "redis://127.0.0.1:1/0"
_names = itertools.count()


@pytest.fixture
def make_core(tmp_path: Path) -> Make:
    """``make_core(**options)``: a fresh ``ServiceCore`` on its own target (host files in
    ``tmp_path``) and a scripted driver for it. The test is the recoverer: no background
    thread probes Redis (``target.recovery`` is marked running), so an outage lasts until the
    test drives the recovery operation itself."""

    def make(**options: Any) -> tuple[ServiceCore, ScriptedDriver]:
        options.setdefault("state_dir", tmp_path / f"state-{next(_names)}")
        # targets are per (location, clock): a clock of its own gives this core a fresh one
        core = ServiceCore(f"unit{next(_names)}", url=NOWHERE,
                           clock=partial(time.monotonic), **options)
        core._target.recovery.running = True
        return core, ScriptedDriver(core._target)

    return make
