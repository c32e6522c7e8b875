"""Warnings about stored data that cannot be served (corrupt or foreign payloads), rate-limited.

Anyone who can write to Redis can make every read of a key find junk, so the log hears of it
at most once per ``INTERVAL`` per Redis location and kind, with how many more were seen
meanwhile; keys appear only as ``keys.redact`` shows them (they often hold session ids or
tokens). ``stats()`` counts every one (``corrupt``). No lock: a race costs one extra line.
"""

from __future__ import annotations

import logging
import time

from cache_service.keys import redact

__all__ = ["INTERVAL", "unservable"]

log = logging.getLogger("cache_service")
INTERVAL = 60.0  # seconds between two warnings of one kind on one location
_last: dict[tuple[str, str], tuple[float, int]] = {}  # (where, kind) -> (when, unsaid)


def unservable(where: str, kind: str, key: str, why: str) -> None:
    """Say (at most once per ``INTERVAL`` for ``where`` and ``kind``) that ``key`` held a
    payload that was not served: ``kind`` is ``"corrupt"`` (ours, removed) or ``"foreign"``
    (not ours, left alone)."""
    now = time.monotonic()
    last, unsaid = _last.get((where, kind), (-INTERVAL, 0))
    if now - last < INTERVAL:
        _last[where, kind] = (last, unsaid + 1)
        return
    _last[where, kind] = (now, 0)
    more = f"; {unsaid} more such key(s) since the last warning" if unsaid else ""
    if kind == "foreign":
        log.warning("%s at %s is not a value of ours (%s): a miss, left "
                    "alone%s", redact(key), where, why, more)
    else:
        log.warning("%s at %s held an unreadable payload (%s): a miss, "
                    "removed%s", redact(key), where, why, more)
