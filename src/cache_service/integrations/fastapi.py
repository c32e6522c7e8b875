"""FastAPI integration: a cache dependency and a route decorator (extra ``fastapi``).

::

    from fastapi import Depends, FastAPI
    from cache_service.aio import AsyncCacheService, api_cache
    from cache_service.integrations.fastapi import (
        HeadMiddleware, cache_response, close_on_shutdown, provide)

    app = FastAPI(lifespan=close_on_shutdown(api_cache))
    app.add_middleware(HeadMiddleware)    # HEAD on GET routes: the GET's headers, no body
    Cache = provide(api_cache)            # a dependency: Depends(Cache) -> the service

    @app.get("/products/{product_id}")
    @cache_response(ttl=60, public=True)  # below the route decorator; the same for everyone
    async def get_product(product_id: int) -> dict: ...

    @app.get("/me")
    @cache_response(ttl=60, vary=["authorization"])  # one entry per bearer token
    async def me(user: User = Depends(current_user)) -> dict: ...

    @app.put("/products/{product_id}")
    async def update_product(product_id: int, cache: AsyncCacheService = Depends(Cache)):
        ...
        await get_product.invalidate(f"/products/{product_id}")

``cache_response`` caches the JSON-able result of GET (and HEAD) requests under a key made of
the method, the path and the sorted query string (or ``key(request)``), loading it through
``get_or_set`` (one computation per key at a time). It never hands one user's response to
another: a request carrying credentials (``Authorization``, ``Proxy-Authorization``, a
``Cookie``) bypasses the cache unless the route says how its response varies with them
(``vary=["authorization"]``, ``vary=["cookie:session"]``: the values join the key, hashed;
or a ``key`` function) or is ``public=True``. A response that sets a cookie, or whose endpoint
set ``Cache-Control: private/no-store/no-cache`` or ``Vary: *``, is not stored. Responses carry
``ETag``, ``X-Cache: HIT|MISS|BYPASS``, ``Cache-Control`` (``public, max-age=<ttl>`` on public
routes, else ``private, no-cache`` unless the endpoint set its own) and ``Vary`` (on routes
that are not public: ``Authorization, Cookie`` plus the ``vary`` headers); ``If-None-Match``
with a matching ETag gets ``304 Not Modified``; a client's ``Cache-Control: no-cache``
recomputes (and re-caches) the response, ``no-store`` bypasses the cache. Endpoints returning
a ``Response`` object are passed through uncached.

FastAPI answers ``405`` to HEAD on an ``@app.get`` route. ``app.add_middleware(HeadMiddleware)``
makes every GET route answer HEAD as HTTP means it: the GET runs (sharing its cache entry), and
its status and headers (``Content-Length``, ``ETag``, ``X-Cache``) are sent without the body.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar, cast, get_type_hints
from urllib.parse import urlencode

import orjson
from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cache_service import aio
from cache_service._ops.loading import load_policy
from cache_service.aio import AsyncCacheService
from cache_service.config import ttl_seconds
from cache_service.core import TTL
from cache_service.integrations._route_policy import RoutePolicy, directives, storable

__all__ = ["HeadMiddleware", "cache_response", "close_on_shutdown", "default_key",
           "invalidate_path", "provide"]

F = TypeVar("F", bound=Callable[..., Any])
CACHEABLE_METHODS = ("GET", "HEAD")
_SCOPE = "http:"
_MAX_PLAIN_TAG = 900


def provide(service: AsyncCacheService | None = None) -> Callable[[], AsyncCacheService]:
    """A dependency returning ``service`` (default: ``cache_service.aio.api_cache``).

    Keep the returned function: ``Depends(it)`` in routes, and
    ``app.dependency_overrides[it] = ...`` to swap the service in tests.
    """
    chosen = service if service is not None else _default_service()

    def cache_service() -> AsyncCacheService:
        return chosen

    return cache_service


def close_on_shutdown(*services: AsyncCacheService) -> Callable[[Any], Any]:
    """A FastAPI ``lifespan`` that closes the services' connections when the app stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for service in services:
                await service.aclose()

    return lifespan


class HeadMiddleware:
    """Answer HEAD like GET, without the body: ``app.add_middleware(HeadMiddleware)``.

    A HEAD request that no route handles as HEAD (FastAPI's ``@app.get`` routes do not) is
    passed on as a GET, so it runs the GET route (with ``cache_response``: the GET's cache
    entry, a miss computes and caches it) and gets its status and headers, ``Content-Length``
    included; every HEAD response, rewritten or not, is sent with an empty body. A route that
    handles HEAD itself (``@app.head``, ``methods=["GET", "HEAD"]``) still gets the HEAD.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        if not _handles_head(scope):
            scope = {**scope, "method": "GET"}

        async def send_headers_only(message: Message) -> None:
            kind = message["type"]
            if kind in ("http.response.body", "http.response.pathsend",
                        "http.response.zerocopysend"):
                message = {"type": "http.response.body", "body": b"",
                           "more_body": bool(message.get("more_body", False))}
            await send(message)

        await self.app(scope, receive, send_headers_only)


def _handles_head(scope: Scope) -> bool:
    """Whether a route of the app (when it can be seen) matches this HEAD request in full."""
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", None)
    if routes is None:
        return False
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


def default_key(request: Request) -> str:
    """``GET /path?a=1&b=2``: method (HEAD counts as GET), path, query sorted."""
    method = "GET" if request.method == "HEAD" else request.method
    query = urlencode(sorted(request.query_params.multi_items()))
    return f"{method} {request.url.path}?{query}"


def _tag(kind: str, text: str) -> str:
    """A tag naming a route, a path, or a path of one route (long ones hashed)."""
    if len(text) > _MAX_PLAIN_TAG:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return f"{_SCOPE}{kind}:{text}"


async def invalidate_path(path: str, cache: AsyncCacheService | None = None) -> None:
    """Drop every cached response for ``path`` (any route, any query, any key function).

    One tag invalidation: its cost does not depend on how many keys the database holds."""
    service = cache if cache is not None else _default_service()
    await service.invalidate_tags(_tag("path", path))


class _Passthrough(Exception):
    """The endpoint returned a Response: serve it as is, cache nothing."""

    def __init__(self, response: Response) -> None:
        super().__init__("uncacheable response")
        self.response = response


def _etag(body: Any) -> str:
    data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


def cache_response(
    ttl: TTL = None, *, cache: AsyncCacheService | None = None,
    key: Callable[[Request], str] | None = None, vary: Iterable[str] = (), public: bool = False,
    max_age: float | None = None, lock: bool = False, jitter: float = 0.0,
    stale_while_revalidate: float = 0.0, stale_if_error: float | None = None,
    soft_timeout: float | None = None, hard_timeout: float | None = None,
    eager_refresh: float | None = None,
) -> Callable[[F], F]:
    """Cache a route's JSON responses (place it below ``@app.get(...)``); see the module doc.

    ``cache`` defaults to ``cache_service.aio.api_cache``; ``key(request)`` replaces the
    default key (method, path, sorted query) and takes responsibility for whatever the
    response depends on. ``vary`` names the request headers (``"authorization"``) and cookies
    (``"cookie:session"``) the response depends on: their values join the key, hashed, and a
    request carrying credentials the route did not declare is not cached. ``public=True``
    declares the response the same for everyone (credentials or not); browsers and proxies may
    then keep it for ``max_age`` seconds (default: the TTL; ``invalidate`` cannot reach them,
    so ``max_age=0`` makes them revalidate each time). ``lock``, ``jitter``, the stale
    options, ``soft_timeout``, ``hard_timeout`` and ``eager_refresh`` are those of
    ``get_or_set`` (past ``hard_timeout`` with no stale response: ``LoadTimeout``, for an
    exception handler to answer, e.g. with a 503). The decorated endpoint gains ``await
    endpoint.invalidate()`` (every entry of this route) and ``await
    endpoint.invalidate("/some/path")`` (one path). Entries carry three tags (route, path,
    route + path), so both invalidations cost one ``UNLINK`` whatever else the database holds.
    """
    service = cache if cache is not None else _default_service()
    make_key = key if key is not None else default_key
    policy = RoutePolicy.build(vary, public=public, custom_key=key is not None,
                               max_age=_max_age(service, ttl, max_age))
    load_policy(jitter=jitter, lock=lock, stale_while_revalidate=stale_while_revalidate,
                stale_if_error=stale_if_error, soft_timeout=soft_timeout,
                hard_timeout=hard_timeout, eager_refresh=eager_refresh)  # raises now if bad

    def decorate(endpoint: F) -> F:
        scope = f"{_SCOPE}{endpoint.__module__}.{endpoint.__qualname__}:"
        route_tag = _tag("route", scope)
        signature, request_name, response_name = _with_request_and_response(endpoint)
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request: Request = _take(kwargs, request_name)
            response: Response = _take(kwargs, response_name)

            async def call() -> Any:
                if is_async:
                    return await endpoint(*args, **kwargs)
                return await run_in_threadpool(endpoint, *args, **kwargs)

            if request.method not in CACHEABLE_METHODS:
                return await call()
            own: list[Any] = []  # what this request's own call of the endpoint produced
            replied: dict[str, str] = {}  # headers we set on ``response`` when answering

            async def load() -> dict[str, Any] | None:
                """The entry to share, or None: not to be stored (nor shared by a waiter)."""
                result = await call()
                if isinstance(result, Response):
                    own.append(result)
                    return None
                body = jsonable_encoder(result)
                entry = {"etag": _etag(body), "body": body}
                own.append(entry)
                # a load that ends after the request was answered (in the background, past a
                # timeout) judges the endpoint's headers, not those our answer added
                return entry if storable(_without(response.headers, replied)) else None

            shared = policy.shares(request)
            asked = directives(request.headers.get("cache-control"))
            entry: dict[str, Any] | None = None
            if not shared or "no-store" in asked:
                await load()
            else:
                k = scope + make_key(request) + policy.key_suffix(request)
                path = request.url.path
                tags = (route_tag, _tag("path", path), _tag("route-path", scope + path))
                if "no-cache" in asked:
                    entry = await load()
                    if entry is not None:
                        await service.set(k, entry, ttl, tags=tags)
                else:
                    entry = await service.get_or_set(
                        k, load, ttl, lock=lock, jitter=jitter,
                        stale_while_revalidate=stale_while_revalidate,
                        stale_if_error=stale_if_error, tags=tags, soft_timeout=soft_timeout,
                        hard_timeout=hard_timeout, eager_refresh=eager_refresh)
                    if entry is None and not own:  # a waiter on a load that was not shared
                        await load()
            if own and isinstance(own[0], Response):
                return own[0]
            status = "HIT" if not own else "MISS" if entry is not None else "BYPASS"
            return _reply(request, response, policy, own[0] if own else entry, status,
                          replied=replied)

        async def invalidate(path: str | None = None) -> None:
            await service.invalidate_tags(
                route_tag if path is None else _tag("route-path", scope + path))

        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.cache = service  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate


def _max_age(service: AsyncCacheService, ttl: TTL, max_age: float | None) -> float:
    """What browsers and proxies may keep a public response: ``max_age``, else the TTL."""
    if max_age is not None:
        return max_age
    return service.default_ttl if ttl is None else ttl_seconds(ttl)


def _take(kwargs: dict[str, Any], name: str) -> Any:
    """A parameter FastAPI filled for us; ours (``_cache_*``) are not passed to the endpoint."""
    return kwargs.pop(name) if name.startswith("_cache_") else kwargs[name]


def _without(headers: Any, ours: dict[str, str]) -> Any:
    """``headers`` without those ``_reply`` set (``ours``) and still holding our value."""
    if not ours:
        return headers
    own = MutableHeaders(raw=list(headers.raw))
    for name, value in ours.items():
        if own.get(name) == value:
            del own[name]
    return own


def _reply(request: Request, response: Response, policy: RoutePolicy, served: Any,
           status: str, *, replied: dict[str, str]) -> Any:
    """The body (or a 304) with ETag, X-Cache, Cache-Control (the endpoint's own, if it set
    one on this request's computation) and Vary (noted in ``replied``)."""
    headers = {"ETag": served["etag"], "X-Cache": status}
    if status == "HIT" or "cache-control" not in response.headers:
        headers["Cache-Control"] = policy.cache_control(status != "BYPASS")
    if policy.vary:
        headers["Vary"] = _merged_vary(response.headers.get("vary"), policy.vary)
    if _matches(request.headers.get("if-none-match"), served["etag"]):
        not_modified = Response(status_code=304, headers=headers)
        not_modified.raw_headers.extend(
            item for item in response.raw_headers if item[0] == b"set-cookie")
        return not_modified
    replied.update(headers)
    response.headers.update(headers)
    return served["body"]


def _merged_vary(own: str | None, ours: str) -> str:
    """The endpoint's ``Vary`` plus ours, each header once."""
    names: dict[str, str] = {}
    for name in (*(own or "").split(","), *ours.split(",")):
        if name.strip():
            names.setdefault(name.strip().lower(), name.strip())
    return ", ".join(names.values())


def _with_request_and_response(endpoint: Callable[..., Any]) -> tuple[inspect.Signature, str, str]:
    """The endpoint's signature (annotations resolved) plus Request/Response parameters
    FastAPI will fill, reusing the endpoint's own if it has them."""
    hints = get_type_hints(endpoint, include_extras=True)
    signature = inspect.signature(endpoint)
    params = [p.replace(annotation=hints.get(p.name, p.annotation))
              for p in signature.parameters.values()]
    names = {}
    for cls, name in ((Request, "_cache_request"), (Response, "_cache_response")):
        found = next((p.name for p in params if p.annotation is cls), None)
        if found is None:
            found = name
            extra = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=cls)
            at = next((i for i, p in enumerate(params)
                       if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
            params.insert(at, extra)
        names[cls] = found
    return (signature.replace(parameters=params,
                              return_annotation=hints.get("return", signature.return_annotation)),
            names[Request], names[Response])


def _default_service() -> AsyncCacheService:
    return aio.api_cache
