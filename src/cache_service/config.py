"""Validated settings: TTLs, where Redis is (``Location``) and per-target tuning (pure)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from cache_service.errors import ConfigurationError

__all__ = ["MAX_TTL", "Location", "TargetOptions", "resolve_location", "shown", "ttl_seconds"]

Kind = Literal["standalone", "sentinel", "cluster", "memory"]
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6379
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "memory": ("memory", False),
}
_SCHEME_HELP = (
    "url must start with redis://, rediss://, unix://, redis+sentinel://, redis+cluster:// "
    "(rediss+sentinel://, rediss+cluster:// for TLS) or memory://"
)
_UNIX_HELP = "a unix:// url needs an absolute socket path: unix://[user:password@]/path/redis.sock[?db=N]"
# The longest TTL: 10**12 s (about 31,700 years). Redis refuses a PX whose expiry time
# (now in ms + PX) overflows a signed 64-bit integer, i.e. PX above ~9.2e18 - now; we stay far
# below, at 1e15 ms (< 2**53): exact as a float, in Lua and in JSON, and with room for what is
# added on the way (stale-while-revalidate time, the tag keys' margin).
MAX_TTL = 10**12
_TTL_HELP = (
    "a TTL must be None (the default TTL), a positive int or float of seconds, or a positive "
    f"timedelta, finite and at most {MAX_TTL:.0e} seconds"
)


def ttl_seconds(ttl: object, what: str = "ttl") -> float:
    """Return a validated TTL in seconds, refusing anything but a positive finite duration of
    at most ``MAX_TTL`` seconds."""
    try:
        if isinstance(ttl, timedelta):
            seconds = ttl.total_seconds()
        elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
            seconds = float(ttl)
        else:
            seconds = math.nan
    except (OverflowError, ValueError, TypeError):  # an int past float range, odd subclasses
        seconds = math.nan
    if not 0 < seconds <= MAX_TTL:  # also refuses nan
        raise ConfigurationError(f"{what}={shown(ttl)} is not allowed: {_TTL_HELP}")
    return seconds


def shown(value: object) -> str:
    """``value`` as an error message may show it: short, and never a huge int's digits."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "<huge int>"
    return text if len(text) <= 60 else text[:57] + "..."


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        kind = "a positive int" if integer else "a positive number"
        raise ConfigurationError(f"{name} must be {kind}, got {value!r}")


@dataclass(frozen=True)
class Location:
    """Where one Redis deployment is; equal locations share one target per process."""

    kind: Kind
    hosts: tuple[tuple[str, int], ...] = ()
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = field(default=None, repr=False)
    service_name: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    read_from_replicas: bool = False
    unix_socket: str | None = None  # standalone over a unix socket: its path (no hosts)

    def describe(self) -> str:
        """A human string with no secrets, for logs and the demo."""
        if self.kind == "memory":
            return f"memory://{self.service_name or ''}"
        user = f"{self.username}:***@" if self.username else ("***@" if self.password else "")
        if self.unix_socket is not None:
            return f"unix://{user}{self.unix_socket}?db={self.db}"
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        scheme = {"standalone": "redis", "sentinel": "redis+sentinel", "cluster": "redis+cluster"}
        s = "s" if self.ssl else ""
        base = scheme[self.kind].replace("redis", f"redis{s}", 1)
        tail = f"/{self.service_name}" if self.kind == "sentinel" else ""
        return f"{base}://{user}{hosts}{tail}/{self.db}"


# How a target talks to Redis: our own layer (``_wire``, the default), or redis-py's client
# (a standalone Redis only).
CONNECTIONS = ("wire", "redis-py")

@dataclass(frozen=True)
class TargetOptions:
    """Tuning shared by every service on one target; fixed by the first service to name it."""

    socket_timeout: float = 0.25
    connect_timeout: float = 0.25
    max_connections: int | None = None
    max_memory_entries: int = 10_000
    max_memory_bytes: int = 64 * 1024 * 1024
    breaker_min_backoff: float = 0.5
    breaker_max_backoff: float = 1.5
    journal_max_entries: int = 10_000
    late_write_guard: float = 10.0
    fallback: str = "host"
    state_dir: str | os.PathLike[str] | bool | None = None
    connection: str = "wire"

    def __post_init__(self) -> None:
        if self.fallback not in ("host", "process"):
            raise ConfigurationError(
                f"fallback must be 'host' (one fallback store shared by this host's processes) "
                f"or 'process' (a store per process), got {self.fallback!r}")
        if self.connection not in CONNECTIONS:
            raise ConfigurationError(
                f"connection must be 'wire' (our own connection layer, the default: standalone "
                f"Redis, Sentinel and Cluster) or 'redis-py' (redis-py's client: a standalone "
                f"Redis only), got {self.connection!r}")
        if not (self.state_dir is None or isinstance(self.state_dir, (bool, str, os.PathLike))):
            raise ConfigurationError(
                "state_dir must be a directory path, None ($CACHE_SERVICE_DIR or the temp "
                f"dir) or False (process-local state), got {self.state_dir!r}")
        for name in ("socket_timeout", "connect_timeout", "breaker_min_backoff",
                     "breaker_max_backoff", "late_write_guard"):
            _positive(name, getattr(self, name))
        if self.max_connections is not None:
            _positive("max_connections", self.max_connections, integer=True)
        for name in ("max_memory_entries", "max_memory_bytes", "journal_max_entries"):
            _positive(name, getattr(self, name), integer=True)
        if self.breaker_max_backoff < self.breaker_min_backoff:
            raise ConfigurationError("breaker_max_backoff must be >= breaker_min_backoff")


def _parse_hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for raw_part in netloc.split(","):
        part = raw_part.strip()
        if not part:
            continue
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port_text = rest.lstrip(":")
        else:
            host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ConfigurationError(f"invalid port in {part!r}") from None
        hosts.append((host or DEFAULT_HOST, port))
    return tuple(hosts) or ((DEFAULT_HOST, default_port),)


def _userinfo(userinfo: str) -> tuple[str | None, str | None]:
    """``user:password`` (or a lone ``password``, as in redis-py) of a URL, unquoted."""
    if not userinfo:
        return None, None
    user, colon, pw = userinfo.partition(":")
    if not colon:  # redis://secret@host is a password, as in redis-py
        return None, unquote(user)
    return unquote(user) or None, unquote(pw)


def _parse_unix(url: str, rest: str) -> Location:
    """``unix://[user:password@]/path/redis.sock[?db=N&password=...&username=...]``."""
    head, slash, tail = rest.partition("/")
    path, _, query_text = (slash + tail).partition("?")
    if (head and not head.endswith("@")) or not path.strip("/"):
        raise ConfigurationError(f"{_UNIX_HELP} (got {url.rsplit('@', maxsplit=1)[-1]!r})")
    userinfo = head[:-1]
    query = {k: v[-1] for k, v in parse_qs(query_text).items()}
    unknown = sorted(set(query) - {"db", "password", "username"})
    if unknown:
        raise ConfigurationError(
            f"unix:// urls take only db=, password= and username= in the query, not {unknown}")
    username, password = _userinfo(userinfo)
    try:
        db = int(query.get("db", 0))
    except ValueError:
        raise ConfigurationError(f"db must be an integer, got {query['db']!r}") from None
    return Location(
        kind="standalone",
        db=db,
        username=query.get("username", username),
        password=query.get("password", password),
        unix_socket=unquote(path),
    )


def parse_url(url: str) -> Location:
    """Parse ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
    ``redis+cluster://`` and ``memory://`` URLs.

    Sentinel: ``redis+sentinel://[user:pass@]h1:26379,h2:26379/service_name[/db]``.
    Cluster: ``redis+cluster://[user:pass@]h1:7000,h2:7001[/0]``.
    Unix socket: ``unix://[user:pass@]/path/redis.sock[?db=N&password=...]``.
    Query options: ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``sentinel_password``,
    ``read_from_replicas=true``.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"url must be a str, not {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    rest = url[len(scheme) + 3 :]
    if sep and scheme.lower() == "unix":
        return _parse_unix(url, rest)
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigurationError(
            f"{_SCHEME_HELP} (got {url.split('://', maxsplit=1)[0]!r}://...)")
    kind = _SCHEMES[scheme.lower()][0]
    ssl = _SCHEMES[scheme.lower()][1]
    if kind == "memory":  # memory://NAME: a separate process-local store per name
        return Location(kind="memory", service_name=rest.strip("/") or None)
    netloc, _, path_query = rest.partition("/")
    userinfo, at, hostpart = netloc.rpartition("@")
    if not at:
        userinfo, hostpart = "", netloc
    username, password = _userinfo(userinfo)
    parts = urlsplit("x://h/" + path_query)
    segments = [s for s in parts.path.split("/") if s]
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    service_name = None
    if kind == "sentinel":
        if not segments:
            raise ConfigurationError("a sentinel url needs the service name: .../mymaster/0")
        service_name = segments.pop(0)
    try:
        db = int(segments[0]) if segments else int(query.get("db", 0))
    except ValueError:
        shown = url.rsplit("@", maxsplit=1)[-1]
        raise ConfigurationError(f"database must be an integer in {shown!r}") from None
    default_port = 26379 if kind == "sentinel" else DEFAULT_PORT
    return Location(
        kind=kind,
        hosts=_parse_hosts(hostpart, default_port),
        db=db,
        username=username,
        password=password,
        ssl=ssl,
        ssl_ca_certs=query.get("ssl_ca_certs"),
        ssl_certfile=query.get("ssl_certfile"),
        ssl_keyfile=query.get("ssl_keyfile"),
        service_name=service_name,
        sentinel_password=query.get("sentinel_password"),
        read_from_replicas=query.get("read_from_replicas", "").lower() in ("1", "true", "yes"),
    )


def redact(text: str, url: str) -> str:
    """``text`` with the userinfo of ``url`` (``user:password@``) masked, however malformed
    ``url`` is: for error messages that quote parts of a URL."""
    rest = url.partition("://")[2] if "://" in url else url
    secret = rest.rpartition("@")[0]
    if not secret:
        return text
    for form in (secret, repr(secret)[1:-1]):
        text = text.replace(form, "***")
    return text


def _parse_env_url(value: str) -> Location:
    """``parse_url`` for ``REDIS_URL``: any failure is a ConfigurationError naming it."""
    try:
        return parse_url(value)
    except ValueError as exc:  # ConfigurationError is one; anything else parse_url may raise
        schemes = ", ".join(f"{scheme}://" for scheme in _SCHEMES)
        raise ConfigurationError(
            f"REDIS_URL={redact(value, value)!r} is not a valid Redis URL: "
            f"{redact(str(exc), value)}. Allowed: a {schemes} URL such as "
            "redis://[[user]:password@]host[:port][/db]; fix or unset REDIS_URL, or pass "
            "url= or host= to the service"
        ) from None


def resolve_location(
    *,
    url: str | None,
    host: str | None,
    port: int | None,
    db: int | None,
    username: str | None,
    password: str | None,
    ssl: bool | None,
    ssl_ca_certs: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    sentinels: list[tuple[str, int]] | None = None,
    service_name: str | None = None,
    sentinel_password: str | None = None,
    cluster: bool = False,
    read_from_replicas: bool = False,
) -> Location:
    """Explicit url/host/port/sentinels first, then ``REDIS_URL``, then localhost:6379."""
    if url is not None and (host is not None or port is not None or sentinels):
        raise ConfigurationError("give either url= or host=/port=/sentinels=, not both")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 < port < 65536):
        raise ConfigurationError(f"port must be an int from 1 to 65535, got {port!r}")
    if db is not None and (isinstance(db, bool) or not isinstance(db, int) or db < 0):
        raise ConfigurationError(f"db must be a non-negative int, got {db!r}")
    from_env = False
    if sentinels:
        if not service_name:
            raise ConfigurationError("sentinels= needs service_name= (e.g. 'mymaster')")
        base = Location(kind="sentinel", hosts=tuple((h, int(p)) for h, p in sentinels),
                        service_name=service_name)
    elif url is not None:
        try:
            base = parse_url(url)
        except ConfigurationError as exc:
            raise ConfigurationError(redact(str(exc), url)) from None
    elif host is not None or port is not None:
        base = Location(kind="standalone", hosts=((host or DEFAULT_HOST, port or DEFAULT_PORT),))
    elif os.environ.get("REDIS_URL"):
        base = _parse_env_url(os.environ["REDIS_URL"])
        from_env = True
    else:
        base = Location(kind="standalone", hosts=((DEFAULT_HOST, DEFAULT_PORT),))
    if base.kind == "memory":
        return base
    kind: Kind = "cluster" if cluster and base.kind == "standalone" else base.kind
    if kind == "cluster" and (db if db is not None else base.db) != 0:
        if from_env and db is None:
            value = os.environ["REDIS_URL"]
            raise ConfigurationError(f"REDIS_URL={redact(value, value)!r} names a database, but "
                                     "Redis Cluster has only database 0: drop the /db")
        raise ConfigurationError("Redis Cluster has only database 0; drop the /db or db=")
    if base.unix_socket is not None and (kind != "standalone" or ssl):
        raise ConfigurationError(
            "a unix:// socket is a standalone server without TLS: drop cluster=/ssl=")
    return Location(
        kind=kind,
        hosts=base.hosts,
        db=db if db is not None else base.db,
        username=username if username is not None else base.username,
        password=password if password is not None else base.password,
        ssl=ssl if ssl is not None else base.ssl,
        ssl_ca_certs=ssl_ca_certs or base.ssl_ca_certs,
        ssl_certfile=ssl_certfile or base.ssl_certfile,
        ssl_keyfile=ssl_keyfile or base.ssl_keyfile,
        service_name=service_name or base.service_name,
        sentinel_password=sentinel_password or base.sentinel_password,
        read_from_replicas=read_from_replicas or base.read_from_replicas,
        unix_socket=base.unix_socket,
    )
