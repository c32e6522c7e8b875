"""get_or_set as one generator flow: look, single-flight, lock, load, store (no I/O here).

The pieces it decides with (policies, flights, effects, the lock's key) are in ``loading``;
this module is the flow itself, driven like every operation by ``Target.run``/``Target.arun``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ._ops.protocol import Op, Unavailable, WrongType
from ._ops.requests import Script, Set
from .config import ttl_seconds
from .core import _UNCOUNTED, MISSING, TTL, ServiceCore, log
from .keys import redact
from .loading import (
    LOAD,
    UNLOCK,
    Flow,
    LoadPolicy,
    Outcome,
    Sleep,
    Stale,
    Wait,
    join,
    land,
    lock_key,
    new_token,
)
from .tags import validate_tags

__all__ = ["get_or_set"]


def get_or_set(core: ServiceCore, key: str, ttl: TTL, policy: LoadPolicy, *,
               task: object | None, tags: object = ()) -> Flow[Any]:
    """The cached value, or the loader's: loaded once at a time per key in this process.

    ``task`` identifies an asyncio caller (``None``: a blocking one), so a caller never
    waits for a load that it is itself (transitively) running.
    """
    if ttl is not None:
        ttl_seconds(ttl)
    if tags:
        tags = validate_tags(tags)
    swr = policy.keep_stale > 0
    found = yield from core._get(key, MISSING, None, swr)
    if found is not MISSING and type(found) is not Stale:
        return found
    k = core._keys.full(key)
    stale: Stale | None = found if found is not MISSING else None
    while True:
        flight, leading = join(core._target, k, task)
        if leading:
            return (yield from _lead(core, flight, key, ttl, policy, stale=stale, tags=tags))
        if stale is not None and _age(core, stale) <= policy.serve_stale_for:
            return stale.value  # another caller is refreshing it
        if flight.would_deadlock(task):  # e.g. the loader asks for its own key
            return (yield from _load(core, key, ttl, policy, stale=stale, tags=tags))
        outcome: Outcome = yield Wait(flight)
        if not outcome.retry:
            return outcome.result()
        # the leader was cancelled: look again, and maybe lead
        found = yield from core._get(key, MISSING, _UNCOUNTED, swr)
        if found is not MISSING and type(found) is not Stale:
            return found
        stale = found if found is not MISSING else None

def _lead(core: ServiceCore, flight: Any, key: str, ttl: TTL, policy: LoadPolicy, *,
          stale: Stale | None, tags: object = ()) -> Flow[Any]:
    """Load for every caller waiting on ``flight``; they share the value or the error."""
    k = core._keys.full(key)
    outcome = Outcome(retry=True)  # cancelled or interrupted: the waiters try again
    try:
        value = yield from _load(core, key, ttl, policy, stale=stale, tags=tags)
        outcome = Outcome(value, codec=core._codec, key=k)
        return value
    except Exception as exc:
        outcome = Outcome(error=exc)
        raise
    finally:
        land(core._target, k, flight, outcome)

def _load(core: ServiceCore, key: str, ttl: TTL, policy: LoadPolicy, *,
          stale: Stale | None, tags: object = ()) -> Flow[Any]:
    """Optionally lock across processes, look again, run the loader and store its value."""
    swr = policy.keep_stale > 0
    name = lock_key(core.prefix, key)
    token: str | None = None
    if policy.lock and not core._target.breaker.is_open:
        token = new_token()
        held, found = yield from _acquire(core, name, token, key, policy, stale=stale)
        if found is not MISSING:
            return found.value if type(found) is Stale else found
        if not held:
            token = None
    try:
        found = yield from core._get(key, MISSING, _UNCOUNTED, swr)
        if found is not MISSING and type(found) is not Stale:
            value = found  # filled while we were becoming the loader
        else:
            stale = found if found is not MISSING else None
            try:
                value = yield LOAD
            except Exception as exc:
                if stale is None or _age(core, stale) > policy.stale_on_error_for:
                    raise
                log.warning("cache_service: loading %r failed (%s: %s); serving the value "
                            "that expired %.1fs ago", redact(core.full_key(key)),
                            type(exc).__name__, exc, _age(core, stale))
                value = stale.value
            else:
                if value is not None or policy.cache_none:
                    yield from core._set(key, value, ttl, policy.keep_stale,
                                         policy.jitter, tags=tags, polite=True)
    except GeneratorExit:  # closed from outside: no I/O is possible; the lock expires
        raise
    except BaseException:  # loader error, cancellation: release the lock, then propagate
        if token is not None:
            yield from _unlock(core, name, token)
        raise
    if token is not None:
        yield from _unlock(core, name, token)
    return value

def _acquire(core: ServiceCore, name: str, token: str, key: str, policy: LoadPolicy, *,
             stale: Stale | None) -> Flow[tuple[bool, Any]]:
    """Take the Redis lock ``(True, MISSING)``, or learn we need not load: ``(False, value)``
    (filled meanwhile, or a stale value another process is refreshing), or give up waiting
    (or Redis left): ``(False, MISSING)``, load anyway."""
    deadline = time.monotonic() + policy.lock_wait
    pause = 0.005
    while True:
        try:
            if (yield Set(name, token, policy.lock_px, nx=True)):
                return True, MISSING
        except Unavailable:  # Redis went away: the per-process guard remains
            return False, MISSING
        except GeneratorExit:
            raise
        except BaseException:  # interrupted mid-request: it may be ours; compare-and-delete
            yield from _unlock(core, name, token)
            raise
        if stale is not None and _age(core, stale) <= policy.serve_stale_for:
            return False, stale  # another process is refreshing it
        if time.monotonic() >= deadline:  # its holder is slow or gone: load anyway
            return False, MISSING
        yield Sleep(pause)
        pause = min(pause * 2, 0.05)
        found = yield from core._get(key, MISSING, _UNCOUNTED, policy.keep_stale > 0)
        if found is not MISSING and type(found) is not Stale:
            return False, found
        stale = found if found is not MISSING else None

def _unlock(core: ServiceCore, name: str, token: str) -> Op[None]:
    """Release our lock (compare-and-delete); if Redis is out, it expires by itself."""
    if not core._target.breaker.is_open:
        with contextlib.suppress(Unavailable, WrongType):
            yield Script(UNLOCK, (name,), (token,))

def _age(core: ServiceCore, stale: Stale) -> float:
    """Seconds since ``stale`` stopped being fresh."""
    return core._wall() - stale.fresh_until
