"""The only module that builds redis-py clients: fail-fast settings for every topology.

redis-py's defaults (retries with backoff, 5 s timeouts) would make a down Redis cost seconds
per call; here every client gets no retries and sub-second timeouts, and the breaker in
``target`` decides when to try again.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.retry import Retry
from redis.sentinel import Sentinel

from .config import Location, TargetOptions

__all__ = [
    "CONNECTIVITY_ERRORS",
    "build_async_client",
    "build_sync_client",
    "drop_idle_connections",
    "is_wrong_type",
]

# Everything a call can raise because Redis is unreachable, slow, failing over or refusing us.
CONNECTIVITY_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)


async def _nothing() -> None:
    return None


def drop_idle_connections(client: Any) -> Any:
    """Disconnect pooled idle connections (awaitable for asyncio clients).

    Run before a probe: after an outage the pooled connections are usually dead, and with
    retries off the first command on each would fail and re-open the breaker.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        return pool.disconnect(inuse_connections=False)
    if isinstance(client, RedisCluster):
        client.disconnect_connection_pools()  # type: ignore[no-untyped-call]
        return None
    return _nothing()


def is_wrong_type(exc: BaseException) -> bool:
    """A foreign value of another Redis type sits at one of our keys."""
    return isinstance(exc, ResponseError) and str(exc).startswith("WRONGTYPE")


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


def build_sync_client(location: Location, options: TargetOptions) -> Any:
    """A redis-py client for ``location``; cluster clients contact a node while built."""
    kwargs = _common(location, options)
    if location.kind == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in location.hosts],  # type: ignore[no-untyped-call]
            retry=Retry(NoBackoff(), 0),
            read_from_replicas=location.read_from_replicas,
            max_connections=options.max_connections or 2**31,
            **kwargs,
        )
    kwargs["retry"] = Retry(NoBackoff(), 0)
    if location.kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(location.hosts),
            sentinel_kwargs={
                "socket_timeout": options.socket_timeout,
                "socket_connect_timeout": options.connect_timeout,
                "password": location.sentinel_password,
                "retry": Retry(NoBackoff(), 0),
            },
            **kwargs,
        )
        if location.read_from_replicas:
            return sentinel.slave_for(  # type: ignore[no-untyped-call]
                location.service_name or "", db=location.db)
        return sentinel.master_for(  # type: ignore[no-untyped-call]
            location.service_name or "", db=location.db)
    host, port = location.hosts[0]
    return redis.Redis(
        host=host, port=port, db=location.db, max_connections=options.max_connections, **kwargs
    )


def build_async_client(location: Location, options: TargetOptions) -> Any:
    """The ``redis.asyncio`` twin of ``build_sync_client`` (bound to the running loop)."""
    kwargs = _common(location, options)
    if location.kind == "cluster":
        return AsyncRedisCluster(
            startup_nodes=[AsyncClusterNode(h, p) for h, p in location.hosts],
            retry=AsyncRetry(NoBackoff(), 0),
            read_from_replicas=location.read_from_replicas,
            **kwargs,
        )
    kwargs["retry"] = AsyncRetry(NoBackoff(), 0)
    if location.kind == "sentinel":
        sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]
            list(location.hosts),
            sentinel_kwargs={
                "socket_timeout": options.socket_timeout,
                "socket_connect_timeout": options.connect_timeout,
                "password": location.sentinel_password,
                "retry": AsyncRetry(NoBackoff(), 0),
            },
            **kwargs,
        )
        if location.read_from_replicas:
            return sentinel.slave_for(location.service_name or "", db=location.db)
        return sentinel.master_for(location.service_name or "", db=location.db)
    host, port = location.hosts[0]
    return redis.asyncio.Redis(
        host=host, port=port, db=location.db, max_connections=options.max_connections, **kwargs
    )
