"""The process-wide table of targets: one per Redis location (and clock) in this process.

Every service naming the same location gets the same ``Target``, so an outage seen by one is
known to all; in a forked child every target drops what belongs to the parent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cache_service._runtime.target import Target
from cache_service.config import Location, TargetOptions
from cache_service.forking import at_fork_child

__all__ = ["get_target", "targets_now"]

log = logging.getLogger("cache_service")

_targets: dict[tuple[Location, Callable[[], float]], Target] = {}
_targets_lock = threading.Lock()


def _after_fork_in_child() -> None:
    for target in list(_targets.values()):
        target.after_fork()


at_fork_child(_after_fork_in_child, 30)


def get_target(location: Location, options: TargetOptions,
               clock: Callable[[], float] = time.monotonic) -> Target:
    """The process-wide target for ``location`` (created by the first service naming it)."""
    key = (location, clock)
    target = _targets.get(key)
    if target is None:
        with _targets_lock:
            target = _targets.get(key)
            if target is None:
                target = _targets[key] = Target(location, options, clock)
    if target.options != options:
        _differs(location, target.options, options)
    return target


# Options that change what a service does, not only how fast: a later service asking for
# other values gets the first one's, which deserves a warning (tuning differences: debug).
_BEHAVIOUR = ("fallback", "state_dir", "connection")
_warned: set[tuple[Location, tuple[str, ...]]] = set()


def _differs(location: Location, kept: TargetOptions, asked: TargetOptions) -> None:
    """Log (a warning once per location and options, for behaviour) what a service asked for
    but does not get because an earlier service on the same location set it."""
    names = tuple(n for n in _BEHAVIOUR if getattr(kept, n) != getattr(asked, n))
    if not names or (location, names) in _warned:
        log.debug("target %s keeps the options of the first service that named it",
                  location.describe())
        return
    _warned.add((location, names))
    log.warning("a service on %s asked for other %s than the first service there; every "
                "service of a location shares the first one's (use another db or URL to "
                "separate them)", location.describe(), "/".join(names))


def targets_now() -> list[Target]:
    """Every target of this process (for tests and tools that close what they made)."""
    with _targets_lock:
        return list(_targets.values())
