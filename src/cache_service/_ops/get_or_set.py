"""get_or_set as one generator flow: look, single-flight, lock, load, store (no I/O here).

The pieces it decides with (policies, flights, effects, the lock's key) are in ``loading``;
this module is the flow itself, driven like every operation by ``Target.run``/``Target.arun``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from cache_service._ops import read, write
from cache_service._ops.context import MISSING, TTL, UNCOUNTED, OpContext
from cache_service._ops.loading import (
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
from cache_service._ops.protocol import Op, Unavailable, WrongType
from cache_service._ops.requests import Script, Set
from cache_service._ops.tags import validate_tags
from cache_service.codecs import PipelineCodec
from cache_service.config import ttl_seconds
from cache_service.keys import redact

log = logging.getLogger("cache_service")

__all__ = ["get_or_set"]


def get_or_set(ctx: OpContext, key: str, ttl: TTL, policy: LoadPolicy, *,
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
    found = yield from read.get(ctx, key, MISSING, None, swr)
    if found is not MISSING and type(found) is not Stale:
        return found
    k = ctx.keys.full(key)
    stale: Stale | None = found if found is not MISSING else None
    while True:
        flight, leading = join(ctx.target, k, task)
        if leading:
            return (yield from _lead(ctx, flight, key, ttl, policy, stale=stale, tags=tags))
        if stale is not None and _age(ctx, stale) <= policy.serve_stale_for:
            return stale.value  # another caller is refreshing it
        if flight.would_deadlock(task):  # e.g. the loader asks for its own key
            return (yield from _load(ctx, key, ttl, policy, stale=stale, tags=tags))
        outcome: Outcome = yield Wait(flight)
        if not outcome.retry:
            return outcome.result()
        # the leader was cancelled: look again, and maybe lead
        found = yield from read.get(ctx, key, MISSING, UNCOUNTED, swr)
        if found is not MISSING and type(found) is not Stale:
            return found
        stale = found if found is not MISSING else None

def _lead(ctx: OpContext, flight: Any, key: str, ttl: TTL, policy: LoadPolicy, *,
          stale: Stale | None, tags: object = ()) -> Flow[Any]:
    """Load for every caller waiting on ``flight``; they share the value or the error."""
    k = ctx.keys.full(key)
    outcome = Outcome(retry=True)  # cancelled or interrupted: the waiters try again
    try:
        value = yield from _load(ctx, key, ttl, policy, stale=stale, tags=tags)
        # waiters get copies through the serializer alone (no compression, no encryption)
        codec = ctx.codec.serializer if type(ctx.codec) is PipelineCodec else ctx.codec
        outcome = Outcome(value, codec=codec, key=k)
        return value
    except Exception as exc:
        outcome = Outcome(error=exc)
        raise
    finally:
        land(ctx.target, k, flight, outcome)

def _load(ctx: OpContext, key: str, ttl: TTL, policy: LoadPolicy, *,
          stale: Stale | None, tags: object = ()) -> Flow[Any]:
    """Optionally lock across processes, look again, run the loader and store its value."""
    swr = policy.keep_stale > 0
    name = lock_key(ctx.keys.prefix, key)
    token: str | None = None
    if policy.lock and not ctx.target.breaker.is_open:
        token = new_token()
        held, found = yield from _acquire(ctx, name, token, key, policy, stale=stale)
        if found is not MISSING:
            return found.value if type(found) is Stale else found
        if not held:
            token = None
    try:
        found = yield from read.get(ctx, key, MISSING, UNCOUNTED, swr)
        if found is not MISSING and type(found) is not Stale:
            value = found  # filled while we were becoming the loader
        else:
            stale = found if found is not MISSING else None
            try:
                value = yield LOAD
            except Exception as exc:
                if stale is None or _age(ctx, stale) > policy.stale_on_error_for:
                    raise
                log.warning("cache_service: loading %r failed (%s: %s); serving the value "
                            "that expired %.1fs ago", redact(ctx.keys.full(key)),
                            type(exc).__name__, exc, _age(ctx, stale))
                value = stale.value
            else:
                if value is not None or policy.cache_none:
                    yield from write.put(ctx, key, value, ttl, policy.keep_stale,
                                         policy.jitter, tags=tags, polite=True)
    except GeneratorExit:  # closed from outside: no I/O is possible; the lock expires
        raise
    except BaseException:  # loader error, cancellation: release the lock, then propagate
        if token is not None:
            yield from _unlock(ctx, name, token)
        raise
    if token is not None:
        yield from _unlock(ctx, name, token)
    return value

def _acquire(ctx: OpContext, name: str, token: str, key: str, policy: LoadPolicy, *,
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
            yield from _unlock(ctx, name, token)
            raise
        if stale is not None and _age(ctx, stale) <= policy.serve_stale_for:
            return False, stale  # another process is refreshing it
        if time.monotonic() >= deadline:  # its holder is slow or gone: load anyway
            return False, MISSING
        yield Sleep(pause)
        pause = min(pause * 2, 0.05)
        found = yield from read.get(ctx, key, MISSING, UNCOUNTED, policy.keep_stale > 0)
        if found is not MISSING and type(found) is not Stale:
            return False, found
        stale = found if found is not MISSING else None

def _unlock(ctx: OpContext, name: str, token: str) -> Op[None]:
    """Release our lock (compare-and-delete); if Redis is out, it expires by itself."""
    if not ctx.target.breaker.is_open:
        with contextlib.suppress(Unavailable, WrongType):
            yield Script(UNLOCK, (name,), (token,))

def _age(ctx: OpContext, stale: Stale) -> float:
    """Seconds since ``stale`` stopped being fresh."""
    return ctx.wall() - stale.fresh_until
