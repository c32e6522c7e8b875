"""The only module that builds clients: fail-fast settings for every topology.

Every location gets our own connection layer (``connection="wire"``: ``wire_client``,
``wire_sentinel_client``, ``wire_cluster``); a standalone one may ask for redis-py's client
instead (``connection="redis-py"``). redis-py's defaults (retries with backoff, 5 s timeouts)
would make a down Redis cost seconds per call; here every redis-py client gets no retries and
sub-second timeouts, and the breaker in ``_runtime`` decides when to try again. redis-py's
public clients also serve what is off the data path: the "side" client of each wire client
(the CLI's INFO, TYPE, SCAN iteration, pipelines...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from cache_service._redis.cluster_requests import (
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
from cache_service._redis.slots import Node
from cache_service._redis.wire_client import AsyncWireClient, WireClient
from cache_service._redis.wire_cluster import WireClusterClient
from cache_service._redis.wire_cluster_async import AsyncWireClusterClient
from cache_service._redis.wire_sentinel import SentinelPlan
from cache_service._redis.wire_sentinel_client import AsyncSentinelWireClient, SentinelWireClient
from cache_service._redis.wire_topology import topology_for
from cache_service._wire import TLSSettings, WireSettings
from cache_service.config import Location, TargetOptions

__all__ = [
    "CONNECTIVITY_ERRORS",
    "OUTAGES",
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

# What the drivers catch from a client call: anything short of a cancellation, so that none
# reaches a caller. ``classify_error`` then tells connectivity (an outage: the breaker opens)
# from an error reply to that one request. uvloop raises RuntimeError ("unable to perform
# operation on <TCPTransport closed=True>") for a reset connection: connectivity, as is
# anything unknown.
CONNECTIVITY_ERRORS: tuple[type[BaseException], ...] = (Exception,)

_WIRE_CLIENTS = (WireClient, AsyncWireClient, WireClusterClient, AsyncWireClusterClient,
                 SentinelWireClient, AsyncSentinelWireClient)


async def _nothing() -> None:
    return None


def drop_idle(client: Any) -> Any:
    """Disconnect pooled idle connections, never one in use (awaitable for asyncio clients).

    After an outage or a server-side idle timeout the pooled connections are dead, and with
    retries off the first command on each would fail.
    """
    if isinstance(client, _WIRE_CLIENTS):
        return client.drop_idle()
    pool = getattr(client, "connection_pool", None)  # a standalone redis-py client
    if pool is not None:
        return pool.disconnect(inuse_connections=False)
    return _nothing()


# -- building clients ----------------------------------------------------------------------------

def _common(location: Location, options: TargetOptions) -> dict[str, Any]:
    """redis-py's public constructor arguments every fail-fast client of ``location`` gets."""
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


@dataclass(frozen=True)
class _Flavour:
    """The redis-py classes of one I/O style, sync or asyncio, and our clients of it."""

    redis: Any
    cluster: Any
    node: Any
    retry: Any
    wire: Any
    wire_cluster: Any
    wire_sentinel: Any


def pool_size(options: TargetOptions) -> int:
    """The pool bound: ``max_connections``, else unbounded (a connection per concurrent
    caller). redis-py 8 bounds a pool at 100 when none is given, and the 101st concurrent
    caller gets ``MaxConnectionsError``: a burst would open the breaker."""
    return options.max_connections or 2**31


def _discovery_timeout(options: TargetOptions) -> float:
    """How long asking every sentinel at once may take: one connect or one reply."""
    return max(options.connect_timeout, options.socket_timeout) + 0.05


def _build(location: Location, options: TargetOptions, flavour: _Flavour) -> Any:
    """A fail-fast client of ``flavour`` for ``location`` (no I/O)."""
    if location.kind == "cluster":
        return _wire_cluster(location, options, flavour)
    if location.kind == "sentinel":
        return _wire_sentinel(location, options, flavour)
    if options.connection == "wire":
        return flavour.wire(wire_settings(location, options),
                            partial(_redis_py_standalone, location, options, flavour))
    return _redis_py_standalone(location, options, flavour)


def _redis_py_standalone(location: Location, options: TargetOptions, flavour: _Flavour) -> Any:
    """redis-py's client of a standalone ``location`` (``connection="redis-py"``, and the
    side client of our own standalone client)."""
    kwargs = _common(location, options)
    kwargs["retry"] = flavour.retry(NoBackoff(), 0)
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
    seeds = tuple(Node(host, port) for host, port in location.hosts)
    topology = topology_for(seeds, wire_settings(location, options))
    side = partial(_side_cluster, location, options, flavour)
    return flavour.wire_cluster(topology, side, read_from_replicas=location.read_from_replicas)


def _side_cluster(location: Location, options: TargetOptions, flavour: _Flavour) -> Any:
    """redis-py's plain public cluster client, for what is off the data path (the CLI's
    INFO, CLUSTER INFO, DBSIZE, SCAN iteration, pipelines). Made on first use; its own
    slot table follows the cluster as redis-py does (a refresh on a MOVED or a failure)."""
    return flavour.cluster(
        startup_nodes=[flavour.node(h, p) for h, p in location.hosts],
        retry=flavour.retry(NoBackoff(), 0),
        max_connections=pool_size(options),
        **_common(location, options),
    )


def _wire_sentinel(location: Location, options: TargetOptions, flavour: _Flavour) -> Any:
    """A Sentinel client on our own layer. Each node it sends to has a plain redis-py client
    on the side (made on first use), for the CLI's admin commands: no redis-py Sentinel
    class is involved."""
    sentinels = tuple(
        WireSettings(host=host, port=port, password=location.sentinel_password,
                     connect_timeout=options.connect_timeout,
                     request_timeout=options.socket_timeout)
        for host, port in location.hosts)
    plan = SentinelPlan(location.service_name or "", sentinels,
                        wire_settings(location, options), _discovery_timeout(options))
    side = partial(_node_client, location, options, flavour)
    return flavour.wire_sentinel(plan, side, read_from_replicas=location.read_from_replicas)


def _node_client(location: Location, options: TargetOptions, flavour: _Flavour,
                 address: tuple[str, int]) -> Any:
    """A plain fail-fast redis-py client of one node a sentinel named (no I/O until used)."""
    host, port = address
    return flavour.redis(host=host, port=port, db=location.db,
                         max_connections=pool_size(options), retry=flavour.retry(NoBackoff(), 0),
                         **_common(location, options))


_SYNC = _Flavour(redis.Redis, RedisCluster, ClusterNode, Retry,
                 WireClient, WireClusterClient, SentinelWireClient)
_ASYNC = _Flavour(redis.asyncio.Redis, AsyncRedisCluster, AsyncClusterNode, AsyncRetry,
                  AsyncWireClient, AsyncWireClusterClient, AsyncSentinelWireClient)


def build_sync_client(location: Location, options: TargetOptions) -> Any:
    """A blocking client for ``location``."""
    return _build(location, options, _SYNC)


def build_async_client(location: Location, options: TargetOptions) -> Any:
    """An asyncio client for ``location`` (bound to the running loop)."""
    return _build(location, options, _ASYNC)


# -- Sentinel and Cluster ---------------------------------------------------------------------

def refresh_topology(client: Any) -> None:
    """Re-read who serves which slots (a sync cluster client; blocking, raises when no node
    answers), or ask the sentinels for the primary again (a sync Sentinel client; keeps the
    known address if none answers). Other clients: nothing to do. For the prober, before its
    PING."""
    if isinstance(client, WireClusterClient):
        client.refresh()
    elif isinstance(client, SentinelWireClient):
        client.rediscover()


# -- near-cache tracking links ------------------------------------------------------------------

def tracking_nodes(client: Any, location: Location, options: TargetOptions
                   ) -> dict[str, Callable[[], WireSettings]]:
    """The primaries a near cache must hear from (named as ``tracking_names`` names them),
    each with a function giving the settings of a connection to it (``_wire``; a Sentinel's
    asks the sentinels when no primary is remembered). A sync client only; for the tracker's
    thread: no I/O, except reading a cluster's slot map when none was read yet."""
    base = wire_settings(location, options)
    if isinstance(client, WireClusterClient):  # the primaries of the shared slot map
        return {node.name: partial(replace, base, host=node.host, port=node.port, db=0)
                for node in client.topology.load().primaries}
    if isinstance(client, SentinelWireClient):
        def wire_primary() -> WireSettings:
            host, port = client.primary_address or client.discover()
            return replace(base, host=host, port=port)
        return dict.fromkeys(tracking_names(client), wire_primary)
    return {name: partial(replace, base) for name in tracking_names(client)}


def tracking_names(client: Any) -> frozenset[str]:
    """Who the data clients now send to: the cluster's primaries, the primary Sentinel
    last named, or the one server. No I/O."""
    if isinstance(client, WireClusterClient):
        return frozenset(node.name for node in client.get_primaries())
    if isinstance(client, SentinelWireClient):
        known = client.primary_address
        return frozenset({"unknown" if known is None else f"{known[0]}:{known[1]}"})
    return frozenset({"server"})
