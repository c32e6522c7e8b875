"""Who may share a cached route response, and what the response tells caches downstream (pure).

A shared cache must never hand one user's response to another. A request carrying credentials
(``Authorization``, ``Proxy-Authorization``, any ``Cookie``) is served from and stored in the
cache only if the route declared how its response varies with them (``vary=``, whose values
go into the key, hashed) or supplied its own key function, or declared itself ``public``. A
response that sets a cookie, or that the endpoint marked ``private``/``no-store``/``no-cache``
or ``Vary: *``, is never stored. Every response says so downstream: ``Cache-Control: public,
max-age=<ttl>`` only on public routes, ``private, no-cache`` otherwise, and ``Vary`` names the
request headers the decision read.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request

from cache_service.errors import ConfigurationError

__all__ = ["CREDENTIALS", "RoutePolicy", "directives", "storable"]

CREDENTIALS = ("authorization", "proxy-authorization", "cookie")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSTORABLE = frozenset({"private", "no-store", "no-cache"})
_VARY_HELP = ('vary= takes request header names ("authorization", "accept-language", '
              '"cookie") and single cookies as "cookie:<name>"')


def directives(header: str | None) -> set[str]:
    """The directive names of a ``Cache-Control`` header, lower case."""
    return {part.strip().split("=", 1)[0].lower() for part in (header or "").split(",")}


def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def storable(headers: Headers) -> bool:
    """Whether a response with these headers (set by the endpoint) may go into a shared cache:
    no ``Set-Cookie``, no ``Cache-Control: private/no-store/no-cache``, no ``Vary: *``."""
    if "set-cookie" in headers:
        return False
    if directives(headers.get("cache-control")) & _UNSTORABLE:
        return False
    return "*" not in {v.strip() for v in headers.get("vary", "").split(",")}


@dataclass(frozen=True)
class RoutePolicy:
    """One route's answer to "may this request share the cache, under which key, and what do
    its responses say downstream"; built once per decorated route."""

    headers: tuple[str, ...]
    """Request headers whose values are part of the key (lower case)."""
    cookies: tuple[str, ...]
    """Cookies whose values are part of the key."""
    covered: frozenset[str]
    """Credential headers the route declared it varies by (all of them for a key function)."""
    public: bool
    max_age: int
    vary: str
    """The ``Vary`` header of every response of this route ('' for none)."""

    @classmethod
    def build(cls, vary: Iterable[str], *, public: bool, custom_key: bool,
              max_age: float) -> RoutePolicy:
        """Validate ``vary`` and ``max_age`` (ConfigurationError naming what is allowed) and
        derive the rest."""
        if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or \
                not math.isfinite(max_age) or max_age < 0:
            raise ConfigurationError(f"max_age must be seconds >= 0, got {max_age!r}")
        if isinstance(vary, str):
            raise ConfigurationError(f"{_VARY_HELP}, as a list; got the string {vary!r}")
        headers: list[str] = []
        cookies: list[str] = []
        for item in vary:
            if not isinstance(item, str):
                raise ConfigurationError(f"{_VARY_HELP}; got {item!r}")
            name, colon, cookie = item.strip().partition(":")
            name = name.lower()
            if not _TOKEN.fullmatch(name) or (colon and (name != "cookie" or
                                                         not _TOKEN.fullmatch(cookie))):
                raise ConfigurationError(f"{_VARY_HELP}; got {item!r}")
            if cookie:
                cookies.append(cookie)
            elif name not in headers:
                headers.append(name)
        named = {*headers, *(["cookie"] if cookies else [])}
        if public and named & set(CREDENTIALS):
            raise ConfigurationError(
                "a public route is the same for everyone, so it cannot vary by credentials "
                f"({', '.join(sorted(named & set(CREDENTIALS)))}); drop public=True or vary=")
        covered = frozenset(CREDENTIALS) if custom_key else frozenset(named & set(CREDENTIALS))
        listed = [] if public else ["authorization", "cookie"]
        listed += [h for h in (*headers, *(["cookie"] if cookies else [])) if h not in listed]
        return cls(tuple(headers), tuple(sorted(set(cookies))), covered, public,
                   math.floor(max_age), ", ".join(_title(h) for h in listed))

    def shares(self, request: Request) -> bool:
        """Whether this request may be served from / stored in the shared cache: it carries
        no credential the route has not declared (or the route is public)."""
        if self.public:
            return True
        return all(name in self.covered or not request.headers.get(name, "").strip()
                   for name in CREDENTIALS)

    def key_suffix(self, request: Request) -> str:
        """What the declared ``vary`` values add to the key: a hash, never the values."""
        if not self.headers and not self.cookies:
            return ""
        values = [[name, request.headers.getlist(name) or None] for name in self.headers]
        values += [["cookie:" + name, request.cookies.get(name)] for name in self.cookies]
        digest = hashlib.sha256(orjson.dumps(values)).hexdigest()[:32]
        return f" vary:{digest}"

    def cache_control(self, shared: bool) -> str:
        """Ours when the endpoint set none: public routes may be kept downstream for the TTL;
        anything else only by the user's own client, revalidated (ETag) before each use."""
        return f"public, max-age={self.max_age}" if shared and self.public else \
            "private, no-cache"
