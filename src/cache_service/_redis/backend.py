"""The only module that builds redis-py clients: fail-fast settings for every topology.

redis-py's defaults (retries with backoff, 5 s timeouts) would make a down Redis cost seconds
per call; here every client gets no retries and sub-second timeouts, and the breaker in
``_runtime`` decides when to try again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, LoadBalancingStrategy, NodesManager, RedisCluster
from redis.retry import Retry

from cache_service._redis.cluster import (
    _AsyncRedisCluster,
    _DeferringNodesManager,
    _SyncRedisCluster,
    by_slot,
    ping_primaries,
    scan_node,
    scan_primaries,
    slot_of,
)
from cache_service._redis.errors import (
    OUTAGES,
    classify_error,
    describe_error,
    diagnose,
    misconfiguration_message,
    refusal_message,
    reply_code,
    reply_text,
)
from cache_service._redis.sentinel import (
    SentinelClient,
    _AsyncRememberingSentinel,
    _AsyncSentinelConnection,
    _AsyncSentinelSSLConnection,
    _RememberingSentinel,
    _SentinelConnection,
    _SentinelSSLConnection,
)
from cache_service._redis.slots import Node
from cache_service._redis.wire_client import AsyncWireClient, WireClient
from cache_service._redis.wire_cluster import WireClusterClient
from cache_service._redis.wire_cluster_async import AsyncWireClusterClient
from cache_service._redis.wire_sentinel import SentinelPlan
from cache_service._redis.wire_sentinel_client import AsyncSentinelWireClient, SentinelWireClient
from cache_service._redis.wire_topology import topology_for
from cache_service._wire import TLSSettings, WireSettings
from cache_service.config import Location, TargetOptions

T = TypeVar("T")

__all__ = [
    "CONNECTIVITY_ERRORS",
    "OUTAGES",
    "SentinelClient",
    "build_async_client",
    "build_sync_client",
    "by_slot",
    "classify_error",
    "describe_error",
    "diagnose",
    "drop_idle",
    "misconfiguration_message",
    "ping_primaries",
    "refresh_topology",
    "refusal_message",
    "reply_code",
    "reply_text",
    "scan_node",
    "scan_primaries",
    "slot_of",
    "tracking_names",
    "tracking_nodes",
]

# What the drivers catch from a redis-py call: anything short of a cancellation, so that none
# reaches a caller. ``classify_error`` then tells connectivity (an outage: the breaker opens)
# from an error reply to that one request. uvloop raises RuntimeError ("unable to perform
# operation on <TCPTransport closed=True>") for a reset connection, and redis-py's asyncio
# cluster can raise AttributeError ('NoneType' object has no attribute 'writelines') when a
# slot-table refresh closes a node's connections under a command in flight (seen in failover
# tests): both are connectivity, as is anything unknown.
CONNECTIVITY_ERRORS: tuple[type[BaseException], ...] = (Exception,)


async def _nothing() -> None:
    return None


def drop_idle(client: Any) -> Any:
    """Disconnect pooled idle connections, never one in use (awaitable for asyncio clients).

    After an outage or a server-side idle timeout the pooled connections are dead, and with
    retries off the first command on each would fail.
    """
    if isinstance(client, (WireClient, AsyncWireClient, WireClusterClient,
                           AsyncWireClusterClient, SentinelWireClient, AsyncSentinelWireClient)):
        return client.drop_idle()
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


# redis-py's sentinel errors embed the full repr of every sentinel client they tried.
# -- building clients ----------------------------------------------------------------------------

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
    sentinel_connections: tuple[Any, Any]  # (plain, TLS) connection classes to data nodes


def pool_size(options: TargetOptions) -> int:
    """The pool bound: ``max_connections``, else unbounded (a connection per concurrent
    caller). redis-py 8 bounds a pool at 100 when none is given, and the 101st concurrent
    caller gets ``MaxConnectionsError``: a burst would open the breaker."""
    return options.max_connections or 2**31


def _discovery_timeout(options: TargetOptions) -> float:
    """How long asking every sentinel at once may take: one connect or one reply."""
    return max(options.connect_timeout, options.socket_timeout) + 0.05


def _build(location: Location, options: TargetOptions, flavour: _Flavour) -> Any:
    """A fail-fast client of ``flavour`` for ``location`` (no I/O, except a sync cluster's
    constructor, which contacts a node)."""
    kwargs = _common(location, options)
    if location.kind == "cluster" and options.connection == "wire" \
            and not location.read_from_replicas:  # replica reads: redis-py's cluster
        return _wire_cluster(location, options, flavour)
    if location.kind == "cluster":
        extra: dict[str, Any] = {}
        if flavour is _ASYNC_FLAVOUR:
            extra["refresh_bounds"] = (
                options.connect_timeout + options.socket_timeout, options.socket_timeout)
        return flavour.cluster(
            startup_nodes=[flavour.node(h, p) for h, p in location.hosts],
            retry=flavour.retry(NoBackoff(), 0),
            load_balancing_strategy=_replica_reads(location),
            max_connections=pool_size(options),
            # MOVED patches the slot table (no I/O); never a full refresh inside a command.
            reinitialize_steps=0,
            **extra,
            **kwargs,
        )
    kwargs["retry"] = flavour.retry(NoBackoff(), 0)
    if location.kind == "sentinel" and options.connection == "wire":
        return _wire_sentinel(location, options, flavour)
    if location.kind == "sentinel":
        sentinel = flavour.sentinel(
            list(location.hosts),
            sentinel_kwargs={
                "socket_timeout": options.socket_timeout,
                "socket_connect_timeout": options.connect_timeout,
                "password": location.sentinel_password,
                "retry": flavour.retry(NoBackoff(), 0),
            },
            discovery_timeout=_discovery_timeout(options),
            **kwargs,
        )
        connection_class = flavour.sentinel_connections[bool(location.ssl)]
        return SentinelClient.of(sentinel, location, options, connection_class)
    if options.connection == "wire":
        wire = AsyncWireClient if flavour is _ASYNC_FLAVOUR else WireClient
        side = partial(_build, location, replace(options, connection="redis-py"), flavour)
        return wire(wire_settings(location, options), side)
    if location.unix_socket is not None:
        return flavour.redis(unix_socket_path=location.unix_socket, db=location.db,
                             max_connections=pool_size(options), **kwargs)
    host, port = location.hosts[0]
    return flavour.redis(
        host=host, port=port, db=location.db, max_connections=pool_size(options), **kwargs
    )


def wire_settings(location: Location, options: TargetOptions) -> WireSettings:
    """Our connection layer's settings for a standalone ``location``."""
    tls = TLSSettings(ca_file=location.ssl_ca_certs, cert_file=location.ssl_certfile,
                      key_file=location.ssl_keyfile) if location.ssl else None
    host, port = location.hosts[0] if location.hosts else ("127.0.0.1", 6379)
    return WireSettings(host=host, port=port, unix_path=location.unix_socket, tls=tls,
                        username=location.username, password=location.password,
                        db=location.db or 0, connect_timeout=options.connect_timeout,
                        request_timeout=options.socket_timeout)


def _wire_cluster(location: Location, options: TargetOptions, flavour: _Flavour) -> Any:
    """A cluster client on our connection layer; its slot map is the one every client of
    ``location`` shares (no I/O here: the map is read on first use)."""
    wire = AsyncWireClusterClient if flavour is _ASYNC_FLAVOUR else WireClusterClient
    seeds = tuple(Node(host, port) for host, port in location.hosts)
    topology = topology_for(seeds, wire_settings(location, options))
    return wire(topology, partial(_build, location, replace(options, connection="redis-py"),
                                  flavour))


def _wire_sentinel(location: Location, options: TargetOptions, flavour: _Flavour) -> Any:
    """A Sentinel client on our own layer. Each node it sends to has a plain redis-py client
    on the side (made on first use), for the CLI's admin commands and the near cache's
    tracking links: no redis-py Sentinel class is involved."""
    sentinels = tuple(
        WireSettings(host=host, port=port, password=location.sentinel_password,
                     connect_timeout=options.connect_timeout,
                     request_timeout=options.socket_timeout)
        for host, port in location.hosts)
    plan = SentinelPlan(location.service_name or "", sentinels,
                        wire_settings(location, options), _discovery_timeout(options))
    wire = AsyncSentinelWireClient if flavour is _ASYNC_FLAVOUR else SentinelWireClient
    side = partial(_node_client, location, options, flavour)
    return wire(plan, side, read_from_replicas=location.read_from_replicas)


def _node_client(location: Location, options: TargetOptions, flavour: _Flavour,
                 address: tuple[str, int]) -> Any:
    """A plain fail-fast redis-py client of one node a sentinel named (no I/O until used)."""
    host, port = address
    return flavour.redis(host=host, port=port, db=location.db,
                         max_connections=pool_size(options), retry=flavour.retry(NoBackoff(), 0),
                         **_common(location, options))


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

def refresh_topology(client: Any) -> None:
    """Re-read who serves which slots (a sync cluster; blocking, raises when no node
    answers), or ask the sentinels for the primary again (a sync Sentinel client; keeps
    the known address if none answers). Other clients: nothing to do. For the prober,
    before its PING."""
    if isinstance(client, WireClusterClient):
        client.refresh()
        if client.built_side is not None:  # the near cache's tracking links follow it
            refresh_topology(client.built_side)
    elif isinstance(client, RedisCluster):
        manager = client.nodes_manager
        NodesManager.initialize(manager)
        if isinstance(manager, _DeferringNodesManager):
            manager.stale = False
    elif isinstance(client, SentinelClient) and isinstance(client.sentinel, _RememberingSentinel):
        client.sentinel.rediscover(client.service_name)
    elif isinstance(client, SentinelWireClient):
        client.rediscover()



_SYNC = _Flavour(redis.Redis, _SyncRedisCluster, ClusterNode, _RememberingSentinel, Retry,
                 (_SentinelConnection, _SentinelSSLConnection))
_ASYNC_FLAVOUR = _Flavour(redis.asyncio.Redis, _AsyncRedisCluster, AsyncClusterNode,
                          _AsyncRememberingSentinel, AsyncRetry,
                          (_AsyncSentinelConnection, _AsyncSentinelSSLConnection))



# -- near-cache tracking links ------------------------------------------------------------------

def tracking_nodes(client: Any, location: Location, options: TargetOptions
                   ) -> dict[str, Callable[[], WireSettings]]:
    """The primaries a near cache must hear from (named as ``tracking_names`` names them),
    each with a function giving the settings of a connection to it (``_wire``; a Sentinel's
    asks the sentinels when no primary is remembered). A sync client only; no I/O here."""
    base = wire_settings(location, options)
    if isinstance(client, WireClusterClient):  # its side client lists the primaries
        client = client.side
    if isinstance(client, RedisCluster):
        return {node.name: partial(replace, base, host=node.host, port=node.port, db=0)
                for node in client.get_primaries()}  # type: ignore[no-untyped-call]
    if isinstance(client, SentinelWireClient):
        def wire_primary() -> WireSettings:
            host, port = client.primary_address or client.discover()
            return replace(base, host=host, port=port)
        return dict.fromkeys(tracking_names(client), wire_primary)
    if isinstance(client, SentinelClient):
        def primary() -> WireSettings:
            host, port = client.sentinel.discover_master(client.service_name)
            return replace(base, host=host, port=port)
        return dict.fromkeys(tracking_names(client), primary)
    return {name: partial(replace, base) for name in tracking_names(client)}


def tracking_names(client: Any) -> frozenset[str]:
    """Who the data clients now send to: the cluster's primaries, the primary Sentinel
    last named, or the one server. No I/O."""
    if isinstance(client, WireClusterClient):
        client = client.side
    if isinstance(client, RedisCluster):
        return frozenset(node.name for node in client.get_primaries())  # type: ignore[no-untyped-call]
    if isinstance(client, SentinelClient):
        sentinel = client.sentinel
        known = getattr(sentinel, "known_primaries", {}).get(client.service_name)
        return frozenset({"unknown" if known is None else f"{known[0]}:{known[1]}"})
    if isinstance(client, SentinelWireClient):
        known = client.primary_address
        return frozenset({"unknown" if known is None else f"{known[0]}:{known[1]}"})
    return frozenset({"server"})
