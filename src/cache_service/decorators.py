"""``@cached``: cache a function's results, sync or ``async def``, with per-call invalidation.

Calls go through ``get_or_set`` (``_ops.get_or_set``): concurrent misses of one key
run the function once per process, with the same options (lock, jitter, stale values).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, cast

import orjson

from cache_service._ops.context import MISSING
from cache_service._ops.get_or_set import get_or_set as get_or_set_op
from cache_service._ops.loading import load_policy
from cache_service._ops.tags import validate_tags
from cache_service._runtime.view import runtime_view
from cache_service.codec import _tag
from cache_service.config import ttl_seconds
from cache_service.core import TTL, ServiceCore
from cache_service.errors import SerializationError
from cache_service.redis_glob import escape_glob
from cache_service.service import CacheService

__all__ = ["CachedFunction", "cached"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_PREFIX = "cached"
_MAX_PLAIN_KEY = 200


class CachedFunction(Protocol):
    """What ``@cached`` returns: the function plus cache controls."""

    cache: ServiceCore
    __call__: Callable[..., Any]

    def invalidate(self, *args: Any, **kwargs: Any) -> int:
        """No arguments: drop every entry of this function; else the entry for those args."""
        ...

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> int:
        """``invalidate``, awaited (for ``async def`` callers)."""
        ...

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        """The key (within the prefix) a call with these arguments uses."""
        ...


def _is_method(sig: inspect.Signature) -> bool:
    params = list(sig.parameters)
    return bool(params) and params[0] in ("self", "cls")


def _argument_key(func: Callable[..., Any], sig: inspect.Signature, method: bool,
                  args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A stable key for a call: arguments bound to names, defaults applied, kwargs sorted."""
    if method:
        args = (None, *args)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{func.__qualname__}(): {exc}") from None
    bound.apply_defaults()
    items = list(bound.arguments.items())[1 if method else 0 :]
    try:
        text = orjson.dumps(_tag(dict(items)), option=orjson.OPT_SORT_KEYS).decode()
    except (SerializationError, orjson.JSONEncodeError) as exc:  # e.g. a lone surrogate
        raise SerializationError(
            f"@cached cannot build a key from the arguments of {func.__qualname__}: {exc}; "
            "pass key_func= to choose the key"
        ) from None
    if len(text) > _MAX_PLAIN_KEY:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def cached(
    key_func: Callable[..., str] | None = None,
    ttl: TTL = None,
    prefix: str | None = None,
    *,
    cache: ServiceCore | None = None,
    cache_none: bool = False,
    jitter: float = 0.0,
    lock: bool = False,
    lock_ttl: float = 10.0,
    lock_wait: float = 5.0,
    stale_while_revalidate: float = 0.0,
    stale_if_error: float | None = None,
    tags: Iterable[str] | Callable[..., Iterable[str]] = (),
    soft_timeout: float | None = None,
    hard_timeout: float | None = None,
    eager_refresh: float | None = None,
    default: Any = MISSING,
    **service_options: Any,
) -> Callable[[F], F]:
    """Cache results of a function (or ``async def``) in a ``CacheService``.

    ``key_func(*args, **kwargs)`` chooses the key; without it the key is built from the bound
    arguments (``self``/``cls`` excluded), so ``f(1, b=2)`` and ``f(b=2, a=1)`` share an entry.
    Keys are scoped to the function (``module.qualname``), so functions sharing a prefix never
    collide. Falsy results are cached; ``None`` is cached only with ``cache_none=True`` because
    it usually means "not found yet". Exceptions are never cached.

    Concurrent calls that miss the same key run the function once (per process; ``lock=True``:
    once across processes too); ``jitter``, ``stale_while_revalidate`` and ``stale_if_error``
    are those of ``CacheService.get_or_set``, and so are ``soft_timeout``, ``hard_timeout``
    (and its ``default``) and ``eager_refresh``: with a timeout, the function runs in the
    background (a thread, or a task on the caller's loop). The function may return
    ``Loaded(value, ttl=..., tags=..., cache=False)``; callers get ``value``.
    An ``async def`` is awaited and its result cached.
    ``tags`` (an iterable of str, or a callable given the call's arguments, like ``key_func``)
    are attached to each cached result, for ``cache.invalidate_tags``.
    """
    if key_func is not None and inspect.iscoroutinefunction(key_func):
        raise TypeError(
            f"key_func {getattr(key_func, '__qualname__', key_func)!r} is a coroutine function: "
            "a key must be computed without awaiting (did you write @cached instead of "
            "@cached()?)"
        )
    service = cache if cache is not None else CacheService(prefix or DEFAULT_PREFIX,
                                                            **service_options)
    if ttl is not None:
        ttl_seconds(ttl)
    static_tags = () if callable(tags) else validate_tags(tags)
    tags_of: Callable[..., Any] | None = tags if callable(tags) else None
    policy = load_policy(cache_none=cache_none, jitter=jitter, lock=lock, lock_ttl=lock_ttl,
                         lock_wait=lock_wait, stale_while_revalidate=stale_while_revalidate,
                         stale_if_error=stale_if_error, soft_timeout=soft_timeout,
                         hard_timeout=hard_timeout, eager_refresh=eager_refresh)

    def decorate(func: F) -> F:
        if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
            raise TypeError(f"@cached cannot cache generator function {func.__qualname__}: "
                            "its result is consumed once; cache a list instead")
        sig = inspect.signature(func)
        method = _is_method(sig)
        scope = f"{func.__module__}.{func.__qualname__}"

        def cache_key(*args: Any, **kwargs: Any) -> str:
            inner = str(key_func(*args, **kwargs)) if key_func is not None else \
                _argument_key(func, sig, method, args, kwargs)
            return f"{scope}:{inner}"

        def call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            if key_func is None and method:
                return cache_key(*args[1:], **kwargs)
            return cache_key(*args, **kwargs)

        view = runtime_view(service)
        target = view.driver

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                flow = get_or_set_op(
                    view.context, call_key(args, kwargs), ttl, policy, task=asyncio.current_task(),
                    tags=static_tags if tags_of is None else tags_of(*args, **kwargs),
                    default=default)
                return await target.arun(flow, functools.partial(func, *args, **kwargs))

            wrapper: Any = async_wrapper
        else:
            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                flow = get_or_set_op(
                    view.context, call_key(args, kwargs), ttl, policy, task=None,
                    tags=static_tags if tags_of is None else tags_of(*args, **kwargs),
                    default=default)
                return target.run(flow, functools.partial(func, *args, **kwargs))

            wrapper = sync_wrapper

        def invalidation(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not args and not kwargs and (key_func is not None or len(sig.parameters) > method):
                return view.invalidate_pattern(escape_glob(scope) + ":*")
            return view.delete((cache_key(*args, **kwargs),))

        def invalidate(*args: Any, **kwargs: Any) -> int:
            result: int = target.run(invalidation(args, kwargs))
            return result

        async def ainvalidate(*args: Any, **kwargs: Any) -> int:
            result: int = await target.arun(invalidation(args, kwargs))
            return result

        wrapper.invalidate = invalidate
        wrapper.ainvalidate = ainvalidate
        wrapper.cache_key = cache_key
        wrapper.cache = service
        return cast(F, wrapper)

    return decorate
