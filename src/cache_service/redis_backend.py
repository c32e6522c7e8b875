"""The only module that builds redis-py clients: fail-fast settings for every topology.

redis-py's defaults (retries with backoff, 5 s timeouts) would make a down Redis cost seconds
per call; here every client gets no retries and sub-second timeouts, and the breaker in
``target`` decides when to try again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, LoadBalancingStrategy, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

from .config import Location, TargetOptions

__all__ = [
    "CONNECTIVITY_ERRORS",
    "SentinelClient",
    "build_async_client",
    "build_sync_client",
    "classify_error",
    "describe_error",
    "drop_idle",
    "misconfiguration_message",
    "ping_primaries",
    "refresh_topology",
    "scan_node",
    "scan_primaries",
    "slot_of",
]

# Everything a call can raise because Redis is unreachable, slow, failing over or refusing us.
# RuntimeError: uvloop's "unable to perform operation on <TCPTransport closed=True>".
CONNECTIVITY_ERRORS: tuple[type[BaseException], ...] = (
    RedisError, RedisClusterException, OSError, RuntimeError)
_BROKEN_TEXT = ("closed by server", "reset by peer", "broken pipe", "transport closed",
                "unable to perform operation", "connection closed")
_AUTH_TEXT = ("noauth", "wrongpass", "invalid password", "invalid username-password",
              "authentication required", "auth <password> called without")


def classify_error(exc: BaseException) -> str:
    """What a failed request means: ``wrongtype`` (foreign data at our key), ``misconfigured``
    (credentials or TLS: a setting must change), ``broken`` (a pooled connection the server
    closed: worth one retry on a fresh connection) or ``outage``."""
    if isinstance(exc, ResponseError) and str(exc).startswith("WRONGTYPE"):
        return "wrongtype"
    text = str(exc).lower()
    if isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError)) or \
            any(t in text for t in _AUTH_TEXT) or "ssl" in text or "certificate" in text:
        return "misconfigured"
    if isinstance(exc, (TimeoutError, RedisTimeoutError)) or "connecting to" in text:
        return "outage"
    if isinstance(exc, (RuntimeError, ConnectionResetError, BrokenPipeError)) or \
            any(t in text for t in _BROKEN_TEXT):
        return "broken"
    return "outage"


def misconfiguration_message(exc: BaseException, location: Location) -> str:
    """One line: what Redis refused and which setting to fix (never a secret)."""
    where = f"Redis at {location.describe()}"
    text = str(exc).lower()
    if "ssl" in text or "certificate" in text:
        return (f"{where}: TLS handshake failed ({describe_error(exc, 160)}): check rediss:// "
                "vs redis://, ssl=, ssl_ca_certs=, ssl_certfile=, ssl_keyfile=")
    return (f"{where} rejected our credentials ({type(exc).__name__}): check password= and "
            "username= (or user:password in the URL)")


async def _nothing() -> None:
    return None


def drop_idle(client: Any) -> Any:
    """Disconnect pooled idle connections, never one in use (awaitable for asyncio clients).

    After an outage or a server-side idle timeout the pooled connections are dead, and with
    retries off the first command on each would fail.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        return pool.disconnect(inuse_connections=False)
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():  # type: ignore[no-untyped-call]
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect(inuse_connections=False)
        return None
    if isinstance(client, AsyncRedisCluster):
        return _gather([node.disconnect_free_connections() for node in client.get_nodes()])
    return _nothing()


async def _gather(awaitables: list[Any]) -> None:
    for awaitable in awaitables:
        await awaitable


def refresh_topology(client: Any) -> None:
    """Ask the cluster who serves which slots now (the probe does it before pinging)."""
    client.nodes_manager.initialize()


# redis-py's sentinel errors embed the full repr of every sentinel client they tried.
_CLIENT_REPR = re.compile(r"<redis\.[\w.]*Redis\(.*?host=([^,)]+),port=(\d+).*?\)>\)>\)>")


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` of a Redis error on one bounded line, for logs."""
    text = _CLIENT_REPR.sub(r"\1:\2", f"{type(exc).__name__}: {exc}").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _common(location: Location, options: TargetOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": location.username,
        "password": location.password,
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": options.connect_timeout,
        "health_check_interval": 0,
    }
    if location.ssl:
        kwargs.update(
            ssl=True,
            ssl_ca_certs=location.ssl_ca_certs,
            ssl_certfile=location.ssl_certfile,
            ssl_keyfile=location.ssl_keyfile,
        )
    return kwargs


def _replica_reads(location: Location) -> LoadBalancingStrategy | None:
    """Cluster reads go to the primaries unless the user opted into replicas."""
    return LoadBalancingStrategy.ROUND_ROBIN_REPLICAS if location.read_from_replicas else None


@dataclass(frozen=True)
class _Flavour:
    """The redis-py classes of one I/O style: sync or asyncio."""

    redis: Any
    cluster: Any
    node: Any
    sentinel: Any
    retry: Any


_SYNC = _Flavour(redis.Redis, RedisCluster, ClusterNode, Sentinel, Retry)


def _build(location: Location, options: TargetOptions, flavour: _Flavour) -> Any:
    """A fail-fast client of ``flavour`` for ``location`` (no I/O, except a sync cluster's
    constructor, which contacts a node)."""
    kwargs = _common(location, options)
    if location.kind == "cluster":
        return flavour.cluster(
            startup_nodes=[flavour.node(h, p) for h, p in location.hosts],
            retry=flavour.retry(NoBackoff(), 0),
            load_balancing_strategy=_replica_reads(location),
            max_connections=options.max_connections or 2**31,
            **kwargs,
        )
    kwargs["retry"] = flavour.retry(NoBackoff(), 0)
    if location.kind == "sentinel":
        sentinel = flavour.sentinel(
            list(location.hosts),
            sentinel_kwargs={
                "socket_timeout": options.socket_timeout,
                "socket_connect_timeout": options.connect_timeout,
                "password": location.sentinel_password,
                "retry": flavour.retry(NoBackoff(), 0),
            },
            **kwargs,
        )
        return SentinelClient.of(sentinel, location, options)
    host, port = location.hosts[0]
    return flavour.redis(
        host=host, port=port, db=location.db, max_connections=options.max_connections, **kwargs
    )


def build_sync_client(location: Location, options: TargetOptions) -> Any:
    """A redis-py client for ``location``."""
    return _build(location, options, _SYNC)


def build_async_client(location: Location, options: TargetOptions) -> Any:
    """A ``redis.asyncio`` client for ``location`` (bound to the running loop)."""
    return _build(location, options, _ASYNC_FLAVOUR)


# -- Sentinel and Cluster ---------------------------------------------------------------------
# Functions below are used as requests ``(function, *args)``: the drivers call them with the
# sync or the asyncio client, and each returns what the client method returns (a value, or an
# awaitable), so one function serves both drivers.

PRIMARIES = "primaries"  # redis-py's node flag for "every primary of the cluster"


def slot_of(key: bytes | str) -> int:
    """The cluster hash slot of ``key`` (scripts may only touch keys of one slot)."""
    return key_slot(key.encode() if isinstance(key, str) else key)


def ping_primaries(client: Any) -> Any:
    """PING every cluster primary: Redis is back only when every slot is served again."""
    return client.ping(target_nodes=PRIMARIES)


def scan_primaries(client: Any, match: str, count: int) -> Any:
    """The first SCAN page of every cluster primary: ``({node_name: cursor}, keys)``."""
    return client.scan(0, match, count, target_nodes=PRIMARIES)


def scan_node(client: Any, node_name: str, cursor: int, match: str, count: int) -> Any:
    """The next SCAN page of one cluster node: ``({node_name: cursor}, keys)``."""
    node = client.get_node(node_name=node_name)
    if node is None:  # the topology changed under the scan: a failover is under way
        raise RedisConnectionError(f"cluster node {node_name} left during a SCAN")
    return client.scan(cursor, match, count, target_nodes=node)


class _AsyncRedisCluster(AsyncRedisCluster):
    """redis-py's asyncio cluster, initialized before its first command is routed.

    redis-py 8.1 routes a keyed command sent before the lazy first ``initialize()`` to a
    random primary; under concurrency the MOVED replies make it close every connection,
    including those other tasks are reading from ("Connection closed by server").
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Initialize first (once; redis-py holds a lock), then run the command."""
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


class SentinelClient:
    """The clients of one Sentinel service, sync or asyncio, closed together.

    Every command goes to the primary that the sentinels name (redis-py re-asks them on each
    new connection and turns a demoted primary's READONLY into a ConnectionError). With
    ``read_from_replicas`` GETs go to a replica instead (redis-py falls back to the primary
    when no replica is up). ``close``/``aclose`` also close the connections to the sentinels.
    """

    def __init__(self, sentinel: Any, primary: Any, replica: Any | None) -> None:
        self.sentinel = sentinel
        self.primary = primary
        self.replica = replica
        # Bound once: attribute lookups stay as cheap as on a plain client.
        self.get = (replica if replica is not None else primary).get
        self.set = primary.set
        self.unlink = primary.unlink
        self.eval = primary.eval
        self.scan = primary.scan
        self.ping = primary.ping

    @classmethod
    def of(cls, sentinel: Any, location: Location, options: TargetOptions) -> SentinelClient:
        """Primary (and replica) clients of ``location``'s service through ``sentinel``."""
        name = location.service_name or ""
        pool = {"db": location.db, "max_connections": options.max_connections}
        primary = sentinel.master_for(name, **pool)
        replica = sentinel.slave_for(name, **pool) if location.read_from_replicas else None
        return cls(sentinel, primary, replica)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.primary, name)

    def _all(self) -> list[Any]:
        extra = [] if self.replica is None else [self.replica]
        return [self.primary, *extra, *self.sentinel.sentinels]

    def close(self) -> None:
        """Close the sync clients (primary, replica, sentinels)."""
        for client in self._all():
            client.close()

    async def aclose(self) -> None:
        """Close the asyncio clients (primary, replica, sentinels)."""
        for client in self._all():
            await client.aclose()


_ASYNC_FLAVOUR = _Flavour(redis.asyncio.Redis, _AsyncRedisCluster, AsyncClusterNode,
                          AsyncSentinel, AsyncRetry)
