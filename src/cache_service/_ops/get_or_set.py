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
    CHECKPOINT,
    LOAD,
    RETRY,
    UNLOCK,
    Flow,
    Fresh,
    LoadPolicy,
    Outcome,
    Sleep,
    Spawn,
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
from cache_service.errors import LoadTimeout
from cache_service.keys import redact
from cache_service.loaded import Loaded

log = logging.getLogger("cache_service")

__all__ = ["get_or_set"]


def get_or_set(ctx: OpContext, key: str, ttl: TTL, policy: LoadPolicy, *,
               task: object | None, tags: object = (), default: Any = MISSING) -> Flow[Any]:
    """The cached value, or the loader's: loaded once at a time per key in this process.

    ``task`` identifies an asyncio caller (``None``: a blocking one), so a caller never
    waits for a load that it is itself (transitively) running. ``default``: what a caller
    gets past ``hard_timeout`` with no stale value (else ``LoadTimeout``).
    """
    if ttl is not None:
        ttl_seconds(ttl)
    if tags:
        tags = validate_tags(tags)
    started = time.monotonic() if policy.timed else 0.0
    found = yield from read.get(ctx, key, MISSING, None, policy.read_mode)
    if found is not MISSING and type(found) is not Stale:
        if type(found) is Fresh:
            if _due(ctx, found, ttl, policy):
                yield from _refresh_early(ctx, key, ttl, policy, task, tags)
            return found.value
        return found
    k = ctx.keys.full(key)
    stale: Stale | None = found if found is not MISSING else None
    while True:
        flight, leading = join(ctx.target, k, task)
        patience = _patience(policy, stale, started)
        if leading:
            if patience is None:  # this caller has no deadline: it loads
                return (yield from _lead(ctx, flight, key, ttl, policy, stale=stale, tags=tags))
            if not (yield from _spawn(ctx, flight, k, _lead(
                    ctx, flight, key, ttl, policy, stale=stale, tags=tags, background=True))):
                land(ctx.target, k, flight, RETRY)  # the background is full: stop waiting
                return _give_up(ctx, k, policy, stale, default, "the background is full")
        if stale is not None and _age(ctx, stale) <= policy.serve_stale_for:
            return stale.value  # another caller (or the background) is refreshing it
        if not leading and flight.would_deadlock(task):  # e.g. the loader asks for its key
            return (yield from _load(ctx, key, ttl, policy, stale=stale, tags=tags))
        # the deadline again: starting the background load took time
        outcome: Outcome | None = yield Wait(flight, _patience(policy, stale, started))
        if outcome is None:  # past the deadline: the load goes on in the background
            return _give_up(ctx, k, policy, stale, default, "the load goes on in the "
                            "background")
        if not outcome.retry:
            return outcome.result()
        # the leader was cancelled: look again, and maybe lead
        found = yield from read.get(ctx, key, MISSING, UNCOUNTED, policy.read_mode)
        if found is not MISSING and type(found) is not Stale:
            return found.value if type(found) is Fresh else found
        stale = found if found is not MISSING else None

def _give_up(ctx: OpContext, k: str, policy: LoadPolicy, stale: Stale | None,
             default: Any, why: str) -> Any:
    """What a caller who stops waiting gets: the stale value, else ``default``, else
    ``LoadTimeout``."""
    next(ctx.target.counters.load_timeouts)
    if stale is not None:
        return stale.value
    if default is not MISSING:
        return default
    raise LoadTimeout(f"loading {redact(k)} did not finish within hard_timeout="
                      f"{policy.hard_timeout:g}s and no stale value was kept ({why}); pass "
                      "default= to get a value instead of this error")

def _patience(policy: LoadPolicy, stale: Stale | None, started: float) -> float | None:
    """Seconds a caller still waits for a load: to ``soft_timeout`` with a stale value to
    serve, else to ``hard_timeout`` (None: no limit)."""
    limit = policy.soft_timeout if stale is not None else None
    if limit is None:
        limit = policy.hard_timeout
    return None if limit is None else max(0.0, started + limit - time.monotonic())

def _due(ctx: OpContext, found: Fresh, ttl: TTL, policy: LoadPolicy) -> bool:
    """Whether a fresh value is past ``eager_refresh`` of the call's TTL."""
    if policy.eager_refresh is None:
        return False
    seconds = ctx.default_ttl if ttl is None else ttl_seconds(ttl)
    return found.fresh_until - ctx.wall() <= (1.0 - policy.eager_refresh) * seconds

def _refresh_early(ctx: OpContext, key: str, ttl: TTL, policy: LoadPolicy,
                   task: object | None, tags: object) -> Flow[None]:
    """Start one background refresh of ``key`` unless a load of it is already running."""
    k = ctx.keys.full(key)
    flight, leading = join(ctx.target, k, task)
    if leading and not (yield from _spawn(ctx, flight, k, _lead(
            ctx, flight, key, ttl, policy, stale=None, tags=tags, background=True, early=True))):
        land(ctx.target, k, flight, RETRY)  # refused: the next hit past it tries again

def _spawn(ctx: OpContext, flight: Any, k: str, lead: Flow[Any]) -> Flow[bool]:
    """Hand ``lead`` (which lands ``flight``) to the background; False if refused. If it
    cannot even start (no thread to be had, no running loop), the flight is handed back."""
    try:
        started: bool = yield Spawn(ctx.target, lead, redact(k))
    except BaseException:
        land(ctx.target, k, flight, RETRY)
        raise
    return started

def _lead(ctx: OpContext, flight: Any, key: str, ttl: TTL, policy: LoadPolicy, *,
          stale: Stale | None, tags: object = (), background: bool = False,
          early: bool = False) -> Flow[Any]:
    """Load for every caller waiting on ``flight``; they share the value or the error.
    ``background``: run by the background runner (it now leads the flight); ``early``: an
    eager refresh of a value still fresh."""
    if background:
        flight.adopt()
    k = ctx.keys.full(key)
    outcome = RETRY  # cancelled or interrupted: the waiters try again
    try:
        value = yield from _load(ctx, key, ttl, policy, stale=stale, tags=tags, early=early,
                                 background=background)
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
          stale: Stale | None, tags: object = (), early: bool = False,
          background: bool = False) -> Flow[Any]:
    """Optionally lock across processes, look again, run the loader and store its value.
    ``early`` (eager refresh): never wait for the lock; whoever holds it is refreshing."""
    name = lock_key(ctx.keys.prefix, key)
    token: str | None = None
    if (policy.lock or early) and not ctx.target.breaker.is_open:
        token = new_token()
        if early:
            held, found = yield from _try_lock(ctx, name, token, key, policy)
        else:
            held, found = yield from _acquire(ctx, name, token, key, policy, stale=stale)
        if found is not MISSING:
            return _value(found)
        if not held:
            token = None
    try:
        found = yield from read.get(ctx, key, MISSING, UNCOUNTED, policy.read_mode)
        if found is not MISSING and type(found) is not Stale and \
                not (early and type(found) is Fresh and _due(ctx, found, ttl, policy)):
            value = _value(found)  # filled while we were becoming the loader
        else:
            stale = found if type(found) is Stale else None
            if background:
                yield CHECKPOINT
            try:
                value = yield LOAD
            except Exception as exc:
                if stale is None or _age(ctx, stale) > policy.stale_on_error_for:
                    raise
                log.warning("loading %r failed (%s: %s); serving the value "
                            "that expired %.1fs ago", redact(ctx.keys.full(key)),
                            type(exc).__name__, exc, _age(ctx, stale))
                value = stale.value
            else:
                keep, store_ttl, store_tags = True, ttl, tags
                if isinstance(value, Loaded):  # the loader chose its caching terms
                    loaded, value, keep = value, value.value, value.cache
                    if loaded.ttl is not None:
                        store_ttl = loaded.ttl
                    if loaded.tags is not None:
                        store_tags = loaded.tags
                if keep and (value is not None or policy.cache_none):
                    yield from write.put(ctx, key, value, store_ttl, policy.keep_stale,
                                         policy.jitter, tags=store_tags, polite=True,
                                         wrap=policy.read_mode == 2)
    except GeneratorExit:  # closed from outside: no I/O is possible; the lock expires
        raise
    except BaseException:  # loader error, cancellation: release the lock, then propagate
        if token is not None:
            yield from _unlock(ctx, name, token)
        raise
    if token is not None:
        yield from _unlock(ctx, name, token)
    return value

def _value(found: Any) -> Any:
    """The value a read found (unwrapped from ``Stale``/``Fresh``)."""
    return found.value if type(found) is Stale or type(found) is Fresh else found

def _try_lock(ctx: OpContext, name: str, token: str, key: str,
              policy: LoadPolicy) -> Flow[tuple[bool, Any]]:
    """One try at the Redis lock (eager refresh): ``(True, MISSING)`` taken; ``(False,
    value)`` another process holds it, so it is refreshing; ``(False, MISSING)`` Redis left
    (or the value too): load anyway."""
    try:
        if (yield Set(name, token, policy.lock_px, nx=True)):
            return True, MISSING
    except Unavailable:
        return False, MISSING
    except GeneratorExit:
        raise
    except BaseException:  # interrupted mid-request: it may be ours; compare-and-delete
        yield from _unlock(ctx, name, token)
        raise
    found = yield from read.get(ctx, key, MISSING, UNCOUNTED, policy.read_mode)
    return False, found if found is not MISSING and type(found) is not Stale else MISSING

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
