"""The only module that builds redis-py clients: fail-fast settings for every topology.

redis-py's defaults (retries with backoff, 5 s timeouts) would make a down Redis cost seconds
per call; here every client gets no retries and sub-second timeouts, and the breaker in
``target`` decides when to try again.
"""

from __future__ import annotations

import asyncio
import errno
import queue
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelManagedConnection as AsyncSentinelConnection
from redis.asyncio.sentinel import SentinelManagedSSLConnection as AsyncSentinelSSLConnection
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, LoadBalancingStrategy, NodesManager, RedisCluster
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
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from .config import Location, TargetOptions

T = TypeVar("T")

__all__ = [
    "CONNECTIVITY_ERRORS",
    "SentinelClient",
    "build_async_client",
    "build_sync_client",
    "classify_error",
    "describe_error",
    "diagnose",
    "drop_idle",
    "misconfiguration_message",
    "ping_primaries",
    "refresh_topology",
    "scan_node",
    "scan_primaries",
    "slot_of",
]

# Everything a call can raise because Redis is unreachable, slow, failing over or refusing us.
# RuntimeError: uvloop raises "unable to perform operation on <TCPTransport closed=True>" when
# redis-py writes to a connection the server has reset.
CONNECTIVITY_ERRORS: tuple[type[BaseException], ...] = (
    RedisError, RedisClusterException, OSError, RuntimeError)


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


# redis-py's sentinel errors embed the full repr of every sentinel client they tried.
_CLIENT_REPR = re.compile(r"<redis\.[\w.]*Redis\(.*?host=([^,)]+),port=(\d+).*?\)>\)>\)>")


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` of a Redis error on one bounded line, for logs."""
    text = _CLIENT_REPR.sub(r"\1:\2", f"{type(exc).__name__}: {exc}").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- what went wrong: classification, messages, diagnosis --------------------------------------

_AUTH_CODES = ("NOAUTH", "WRONGPASS")
_AUTH_TEXTS = ("invalid username-password pair", "invalid password",
               "called without any password configured", "no password is set",
               "HELLO must be called with the client already authenticated")
# What ``diagnose`` reports: misconfigurations found by probing.
_DIAGNOSED = ("does not speak TLS", "speaks TLS", "requires a TLS client certificate")
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")
# TLS failures that a retry will not fix: the settings (CA, client certificate, scheme) are wrong.
_SSL_SETTINGS = ("CERTIFICATE", "WRONG_VERSION_NUMBER", "UNKNOWN_CA", "HANDSHAKE_FAILURE",
                 "UNSUPPORTED_PROTOCOL", "NO_SHARED_CIPHER", "PACKET_LENGTH_TOO_LONG",
                 "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "TLSV1_ALERT", "TLSV13_ALERT",
                 "SSLV3_ALERT", "KEY_VALUES_MISMATCH", "PEM_LIB", "NO_CERTIFICATE")
_BROKEN_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_BROKEN_TEXTS = ("Connection closed by server", "Connection reset by peer", "Broken pipe",
                 "while writing to socket", "Connection lost")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _auth_code(exc: BaseException) -> str | None:
    """NOAUTH, WRONGPASS, AUTH (a rejected AUTH) or None: why the server refused us."""
    for err in _chain(exc):
        code = getattr(err, "status_code", None)
        text = str(err)
        if code in _AUTH_CODES:
            return str(code)
        if text.startswith(_AUTH_CODES):
            return text.split(" ", 1)[0]
        if isinstance(err, AuthenticationWrongNumberOfArgsError):
            return "AUTH"
        if isinstance(err, AuthenticationError) or any(t in text for t in _AUTH_TEXTS):
            if any(t in text for t in ("HELLO must be called", "NOAUTH", "Authentication req")):
                return "NOAUTH"
            if any(t in text for t in ("invalid username-password", "invalid password",
                                       "Invalid Username")):
                return "WRONGPASS"
            return "AUTH"  # e.g. a password sent to a server that has none
    return None


def _ssl_reason(exc: BaseException) -> str | None:
    """The OpenSSL reason (``CERTIFICATE_VERIFY_FAILED``...) of a TLS settings failure."""
    for err in _chain(exc):
        if isinstance(err, ssl.SSLCertVerificationError):
            return "CERTIFICATE_VERIFY_FAILED"
        reason = getattr(err, "reason", None) if isinstance(err, ssl.SSLError) else None
        found = _SSL_REASON.search(str(err))
        name = str(reason) if reason else (found.group(1) if found else None)
        if name and any(marker in name for marker in _SSL_SETTINGS):
            return name
    return None


def _is_broken(exc: BaseException) -> bool:
    """A pooled connection the server (or the network) closed or reset under us."""
    if isinstance(exc, RuntimeError):  # uvloop: write on a transport that is already closed
        text = str(exc)
        return "unable to perform operation on" in text and "closed=True" in text
    if isinstance(exc, (RedisTimeoutError, TimeoutError, socket.timeout)):
        return False
    if not isinstance(exc, (RedisConnectionError, OSError)) or "connecting to" in str(exc):
        return False  # a refused or failed connect is not a broken pooled connection
    for err in _chain(exc):
        if isinstance(err, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return True
        if isinstance(err, OSError) and err.errno in _BROKEN_ERRNOS:
            return True
    return any(text in str(exc) for text in _BROKEN_TEXTS)


def _is_wrong_type(exc: BaseException) -> bool:
    """A foreign value of another Redis type sits at one of our keys."""
    return isinstance(exc, ResponseError) and str(exc).startswith("WRONGTYPE")


def classify_error(exc: BaseException) -> str:
    """What a failed Redis request means: ``"wrongtype"`` (foreign data at our key),
    ``"misconfigured"`` (credentials or TLS settings: retrying will not help),
    ``"broken"`` (a pooled connection was closed or reset: one retry on a fresh one may
    succeed) or ``"outage"`` (timeouts, refused connects, failovers: open the breaker)."""
    if _is_wrong_type(exc):
        return "wrongtype"
    if _auth_code(exc) is not None or _ssl_reason(exc) is not None:
        return "misconfigured"
    if any(marker in str(err) for err in _chain(exc) for marker in _DIAGNOSED):
        return "misconfigured"
    if _is_broken(exc):
        return "broken"
    return "outage"


_TLS_SCHEME = {"standalone": "rediss://", "cluster": "rediss+cluster://",
               "sentinel": "rediss+sentinel://"}
_PLAIN_SCHEME = {"standalone": "redis://", "cluster": "redis+cluster://",
                 "sentinel": "redis+sentinel://"}


def _scrub(text: str, location: Location) -> str:
    for secret in (location.password, location.sentinel_password):
        if secret:
            text = text.replace(secret, "***")
    return text


def misconfiguration_message(exc: BaseException, location: Location) -> str:
    """One line for a ``"misconfigured"`` error: what is wrong at ``location`` and which
    setting to fix; never contains a password."""
    where = f"Redis at {location.describe()}"
    sentinel = " (or sentinel_password= for the sentinels)" if location.kind == "sentinel" else ""
    code = _auth_code(exc)
    reason = _ssl_reason(exc)
    if code == "NOAUTH":
        text = (f"{where} requires a password (NOAUTH): set password= (and username= for an "
                f"ACL user) or the URL's user:password{sentinel}")
    elif code == "WRONGPASS":
        text = (f"{where} rejected the credentials (WRONGPASS): check password=/username= or "
                f"the URL's user:password{sentinel}")
    elif code is not None:
        text = (f"{where} refused AUTH ({describe_error(exc, 120)}): the server may have no "
                f"password set; check password=/username={sentinel}")
    elif reason is not None and "CERTIFICATE_VERIFY_FAILED" in reason:
        text = (f"TLS to {where} failed certificate verification ({reason}): set "
                "ssl_ca_certs= to the CA that signed the server's certificate")
    elif reason is not None and ("CERTIFICATE_REQUIRED" in reason or "BAD_CERTIFICATE" in reason
                                 or "UNKNOWN_CA" in reason or "NO_CERTIFICATE" in reason):
        text = (f"{where} refused our TLS client certificate ({reason}): set "
                "ssl_certfile=/ssl_keyfile= to a certificate its tls-ca-cert-file trusts")
    elif reason is not None and "WRONG_VERSION_NUMBER" in reason:
        text = (f"{where} does not speak TLS ({reason}): use "
                f"{_PLAIN_SCHEME.get(location.kind, 'redis://')} (or ssl=False)")
    elif reason is not None:
        text = f"TLS to {where} failed ({reason}): check ssl=, ssl_ca_certs=, ssl_certfile="
    else:
        text = f"{where}: {describe_error(exc, 200)}"
    return _scrub(text.replace("\n", " "), location)


def _answers_plain_redis(host: str, port: int, options: TargetOptions) -> bool:
    """A plain-TCP ``PING`` gets a Redis reply (``+PONG``, or ``-NOAUTH`` if it wants a
    password)."""
    try:
        with socket.create_connection((host, port), timeout=options.connect_timeout) as sock:
            sock.settimeout(options.socket_timeout)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def _completes_tls_handshake(host: str, port: int, options: TargetOptions) -> bool:
    """A TLS handshake (no verification) with ``host:port`` completes, or the server answers
    it with a TLS alert (it wants a client certificate): it speaks TLS."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=options.connect_timeout) as raw:
            raw.settimeout(options.socket_timeout)
            with context.wrap_socket(raw, server_hostname=host):
                return True
    except ssl.SSLError as exc:
        return "ALERT" in str(getattr(exc, "reason", "") or "").upper()
    except OSError:
        return False


def _wants_client_certificate(location: Location, host: str, port: int,
                              options: TargetOptions) -> bool:
    """With ``location``'s own TLS settings, the server answers the handshake with a
    "certificate required" alert. Nothing is sent after the handshake: the alert comes on
    its own, and data sent to a closing server would turn it into a reset."""
    context = ssl.create_default_context(cafile=location.ssl_ca_certs)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # verification failures are reported by classify_error
    if location.ssl_certfile:
        try:
            context.load_cert_chain(location.ssl_certfile, location.ssl_keyfile)
        except (OSError, ssl.SSLError):
            return False
    try:
        with socket.create_connection((host, port), timeout=options.connect_timeout) as raw:
            raw.settimeout(options.socket_timeout)
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.recv(1)
    except ssl.SSLError as exc:
        return "CERTIFICATE_REQUIRED" in str(getattr(exc, "reason", "") or "")
    except OSError:
        return False
    return False


def diagnose(location: Location, options: TargetOptions) -> str | None:
    """After a failure, look for a TLS mismatch (blocking, bounded by the connect and socket
    timeouts per node, at most three nodes): a message naming the fix, or None when nothing
    is learned.

    A ``rediss`` location whose server answers a plain ``PING`` does not speak TLS, and one
    whose server rejects the handshake for want of a client certificate needs
    ``ssl_certfile=``; a plain location whose server completes a TLS handshake speaks TLS.
    Sentinel data nodes and unix sockets are not checked (the sentinels name the nodes; a
    socket has no TLS).
    """
    if location.kind not in ("standalone", "cluster") or location.unix_socket is not None:
        return None
    for host, port in location.hosts[:3]:
        if location.ssl and _answers_plain_redis(host, port, options):
            return (f"the server at {host}:{port} does not speak TLS: use "
                    f"{_PLAIN_SCHEME[location.kind]} (or ssl=False)")
        if location.ssl and _wants_client_certificate(location, host, port, options):
            return (f"the server at {host}:{port} requires a TLS client certificate: set "
                    "ssl_certfile= and ssl_keyfile= to one its tls-ca-cert-file trusts")
        if not location.ssl and _completes_tls_handshake(host, port, options):
            return (f"the server at {host}:{port} speaks TLS: use "
                    f"{_TLS_SCHEME[location.kind]} (and ssl_ca_certs=...)")
    return None


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


def _discovery_timeout(options: TargetOptions) -> float:
    """How long asking every sentinel at once may take: one connect or one reply."""
    return max(options.connect_timeout, options.socket_timeout) + 0.05


def _build(location: Location, options: TargetOptions, flavour: _Flavour) -> Any:
    """A fail-fast client of ``flavour`` for ``location`` (no I/O, except a sync cluster's
    constructor, which contacts a node)."""
    kwargs = _common(location, options)
    if location.kind == "cluster":
        extra: dict[str, Any] = {}
        if flavour is _ASYNC_FLAVOUR:
            extra["refresh_bounds"] = (
                options.connect_timeout + options.socket_timeout, options.socket_timeout)
        return flavour.cluster(
            startup_nodes=[flavour.node(h, p) for h, p in location.hosts],
            retry=flavour.retry(NoBackoff(), 0),
            load_balancing_strategy=_replica_reads(location),
            max_connections=options.max_connections or 2**31,
            # MOVED patches the slot table (no I/O); never a full refresh inside a command.
            reinitialize_steps=0,
            **extra,
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
            discovery_timeout=_discovery_timeout(options),
            **kwargs,
        )
        connection_class = flavour.sentinel_connections[bool(location.ssl)]
        return SentinelClient.of(sentinel, location, options, connection_class)
    if location.unix_socket is not None:
        return flavour.redis(unix_socket_path=location.unix_socket, db=location.db,
                             max_connections=options.max_connections, **kwargs)
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


class _DeferringNodesManager(NodesManager):
    """A cluster's slot table whose refreshes requested inside a command are deferred.

    redis-py re-reads the topology (CLUSTER SLOTS to node after node, one socket timeout per
    hung node, under a lock every other caller then queues on) in the thread whose command
    just failed. Here that only marks the table stale; ``refresh_topology`` (the prober)
    does the real refresh.
    """

    stale = False

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        """Mark the topology as needing a refresh (no I/O)."""
        self.stale = True


class _SyncRedisCluster(RedisCluster):
    """redis-py's cluster whose failed commands never refresh the topology themselves."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # the constructor's own refresh is a real one
        self.nodes_manager.__class__ = _DeferringNodesManager


def refresh_topology(client: Any) -> None:
    """Re-read who serves which slots (a sync cluster; blocking, raises when no node
    answers), or ask the sentinels for the primary again (a sync Sentinel client; keeps
    the known address if none answers). Other clients: nothing to do. For the prober,
    before its PING."""
    if isinstance(client, RedisCluster):
        manager = client.nodes_manager
        NodesManager.initialize(manager)
        if isinstance(manager, _DeferringNodesManager):
            manager.stale = False
    elif isinstance(client, SentinelClient) and isinstance(client.sentinel, _RememberingSentinel):
        client.sentinel.rediscover(client.service_name)


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a background task's outcome (no "exception was never retrieved")."""
    if not task.cancelled():
        task.exception()


class _AsyncRedisCluster(AsyncRedisCluster):
    """redis-py's asyncio cluster, initialized before its first command is routed, whose
    topology refreshes never hold a command up for long.

    redis-py 8.1 routes a keyed command sent before the lazy first ``initialize()`` to a
    random primary; under concurrency the MOVED replies make it close every connection,
    including those other tasks are reading from ("Connection closed by server").

    After a connection error redis-py refreshes the topology at the start of the next
    command (CLUSTER SLOTS node after node, then COMMAND on a primary: seconds when nodes
    hang, with every task queued on its lock). Here one shared background task refreshes,
    re-reading only the slots once the command table is known, and each command waits for
    it at most ``refresh_bounds`` (first initialization, later refreshes) before it fails
    with a TimeoutError; the refresh goes on for the next command.
    """

    def __init__(self, *args: Any, refresh_bounds: tuple[float, float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refresh_bounds = refresh_bounds
        self._refresh_task: asyncio.Future[None] | None = None
        self._commands_read = False

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Initialize first (bounded, shared), then run the command."""
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)

    async def initialize(self, additional_startup_nodes_info: Any = None,
                         last_failed_node_name: str | None = None) -> _AsyncRedisCluster:
        """Wait (bounded) for the shared refresh, starting it if none is running."""
        if not self._initialize:
            return self
        task = self._refresh_task
        if task is None or task.done():
            task = self._refresh_task = asyncio.ensure_future(
                self._refresh(last_failed_node_name))
            task.add_done_callback(_consume)
        bound = self._refresh_bounds[1 if self._commands_read else 0]
        done, _ = await asyncio.wait({task}, timeout=bound)  # never cancels the refresh
        if not done:
            raise RedisTimeoutError(f"cluster topology refresh still running after {bound:g}s")
        if task.cancelled():
            raise RedisConnectionError("cluster topology refresh cancelled: the client closed")
        error = task.exception()
        if error is not None:
            raise error
        return self

    async def _refresh(self, last_failed_node_name: str | None) -> None:
        if not self._commands_read:  # slots, then the command table (once)
            await super().initialize(last_failed_node_name=last_failed_node_name)
            self._commands_read = True
            return
        await self.nodes_manager.initialize(last_failed_node_name=last_failed_node_name)
        self._initialize = False

    async def aclose(self) -> None:
        """Stop a running refresh, then close every connection (redis-py skips that while
        a refresh is owed)."""
        task = self._refresh_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        if self._initialize and self._commands_read:
            self._initialize = False
        await super().aclose()


def _sentinel_failure(service_name: str, sentinels: list[Any],
                      errors: dict[int, BaseException], timeout: float) -> MasterNotFoundError:
    """redis-py's MasterNotFoundError text: each sentinel with what it answered."""
    parts = [f"{sentinel} - {errors[i]!r}" if i in errors else f"{sentinel} - no answer "
             f"within {timeout:g}s" for i, sentinel in enumerate(sentinels)]
    return MasterNotFoundError(f"No master found for {service_name!r} : {', '.join(parts)}")


Address = tuple[str, int]


class _KnownNodes:
    """What the sentinels last said for each service: the primary, and (for replica reads)
    the live replicas. Shared by both Sentinel twins."""

    known_primaries: dict[str, Address]
    known_replicas: dict[str, list[Address]]
    discovery_timeout: float

    def _remember_nothing(self, discovery_timeout: float) -> None:
        self.discovery_timeout = discovery_timeout
        self.known_primaries = {}
        self.known_replicas = {}

    def forget_node(self, service_name: str, address: Address) -> None:
        """A connection to ``address`` failed: if the sentinels named it (as the primary or
        a replica), ask them again on the next connection."""
        if self.known_primaries.get(service_name) == address:
            self.known_primaries.pop(service_name, None)
        if address in self.known_replicas.get(service_name, ()):
            self.known_replicas.pop(service_name, None)

    def _primary_in(self, service_name: str, masters: Any) -> Address | None:
        state = dict(masters).get(service_name)
        if state and self.check_master_state(state, service_name):  # type: ignore[attr-defined]
            return (self._force_master_ip or state["ip"], int(state["port"]))  # type: ignore[attr-defined]
        return None

    def _replicas_in(self, replicas: Any) -> list[Address] | None:
        alive = self.filter_slaves(replicas)  # type: ignore[attr-defined]
        return [(str(h), int(p)) for h, p in alive] or None


class _RememberingSentinel(_KnownNodes, Sentinel):
    """redis-py's Sentinel, remembering each service's nodes between connections.

    redis-py asks the sentinels, one after another, on every new connection: with hung
    sentinels each connection costs a socket timeout per sentinel even when the primary is
    fine. Here new connections reuse the last addresses found; one is forgotten when a
    connection to it fails, times out, or meets READONLY/NOREPLICAS (a failover), and the
    next connection asks every sentinel at once, for at most ``discovery_timeout``.
    """

    def __init__(self, sentinels: list[Address], *, discovery_timeout: float,
                 **kwargs: Any) -> None:
        Sentinel.__init__(self, sentinels, **kwargs)  # type: ignore[no-untyped-call]
        self._remember_nothing(discovery_timeout)

    def discover_master(self, service_name: str) -> Address:
        """The remembered primary, or the first valid answer of the sentinels."""
        known = self.known_primaries.get(service_name)
        if known is not None:
            return known
        address, errors = self._first_answer(
            lambda s: s.sentinel_masters(), partial(self._primary_in, service_name))
        if address is None:
            raise _sentinel_failure(service_name, self.sentinels, errors,
                                    self.discovery_timeout)
        self.known_primaries[service_name] = address
        return address

    def discover_slaves(self, service_name: str) -> list[Address]:
        """The remembered live replicas, or the first non-empty answer ([] if none)."""
        known = self.known_replicas.get(service_name)
        if known is not None:
            return known
        replicas, _ = self._first_answer(
            lambda s: s.sentinel_slaves(service_name), self._replicas_in)
        if replicas is not None:
            self.known_replicas[service_name] = replicas
        return replicas or []

    def rediscover(self, service_name: str) -> None:
        """Ask the sentinels now; keep the remembered primary if none answers."""
        address, _ = self._first_answer(
            lambda s: s.sentinel_masters(), partial(self._primary_in, service_name))
        if address is not None:
            self.known_primaries[service_name] = address
        self.known_replicas.pop(service_name, None)

    def _first_answer(self, query: Callable[[Any], Any], accept: Callable[[Any], T | None]
                      ) -> tuple[T | None, dict[int, BaseException]]:
        """Run ``query`` on every sentinel at once (a thread each); the first answer that
        ``accept`` turns into a result, within ``discovery_timeout``, and the errors."""
        answers: queue.SimpleQueue[tuple[int, Any, BaseException | None]] = queue.SimpleQueue()

        def ask(index: int, sentinel: Any) -> None:
            try:
                answers.put((index, query(sentinel), None))
            except Exception as exc:  # any failure of one sentinel: try the others
                answers.put((index, None, exc))

        sentinels = list(self.sentinels)
        for index, sentinel in enumerate(sentinels):
            threading.Thread(target=ask, args=(index, sentinel), daemon=True,
                             name=f"cache-service-sentinel-{index}").start()
        deadline = time.monotonic() + self.discovery_timeout
        errors: dict[int, BaseException] = {}
        for _ in sentinels:
            try:
                index, answer, error = answers.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if error is not None:
                errors[index] = error
                continue
            result = accept(answer)
            if result is not None:
                return result, errors
        return None, errors


class _AsyncRememberingSentinel(_KnownNodes, AsyncSentinel):
    """The asyncio twin of ``_RememberingSentinel`` (the sentinels are asked concurrently)."""

    def __init__(self, sentinels: list[Address], *, discovery_timeout: float,
                 **kwargs: Any) -> None:
        AsyncSentinel.__init__(self, sentinels, **kwargs)  # type: ignore[no-untyped-call]
        self._remember_nothing(discovery_timeout)

    async def discover_master(self, service_name: str) -> Address:
        """The remembered primary, or the first valid answer of the sentinels."""
        known = self.known_primaries.get(service_name)
        if known is not None:
            return known
        address, errors = await self._first_answer(
            lambda s: s.sentinel_masters(), partial(self._primary_in, service_name))
        if address is None:
            raise _sentinel_failure(service_name, self.sentinels, errors,
                                    self.discovery_timeout)
        self.known_primaries[service_name] = address
        return address

    async def discover_slaves(self, service_name: str) -> list[Address]:
        """The remembered live replicas, or the first non-empty answer ([] if none)."""
        known = self.known_replicas.get(service_name)
        if known is not None:
            return known
        replicas, _ = await self._first_answer(
            lambda s: s.sentinel_slaves(service_name), self._replicas_in)
        if replicas is not None:
            self.known_replicas[service_name] = replicas
        return replicas or []

    async def _first_answer(self, query: Callable[[Any], Any], accept: Callable[[Any], T | None]
                            ) -> tuple[T | None, dict[int, BaseException]]:
        """Await ``query`` on every sentinel at once; the first answer that ``accept`` turns
        into a result, within ``discovery_timeout`` (the rest are cancelled), and the
        errors."""
        sentinels = list(self.sentinels)
        tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(query(s)) for s in sentinels]
        for task in tasks:
            task.add_done_callback(_consume)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.discovery_timeout
        errors: dict[int, BaseException] = {}
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(
                    pending, timeout=max(deadline - loop.time(), 0),
                    return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break
                for index, task in enumerate(tasks):
                    if task not in done:
                        continue
                    error = task.exception()
                    if error is not None:
                        errors[index] = error
                        continue
                    result = accept(task.result())
                    if result is not None:
                        return result, errors
        finally:
            for task in pending:
                task.cancel()
        return None, errors


def _forgets_node(exc: BaseException) -> bool:
    """This failure on a connection to a node the sentinels named means: ask them again."""
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(("NOREPLICAS", "READONLY"))


def _forget_address(connection: Any) -> None:
    """Make the connection's sentinel forget the address it is connected to."""
    pool = connection.connection_pool
    pool.sentinel_manager.forget_node(pool.service_name, (connection.host, connection.port))


class _SentinelConnection(SentinelManagedConnection):
    """A connection to a Sentinel-named node that makes the sentinel forget that address
    when it fails (so a failover is followed while hung sentinels cost nothing)."""

    def _forget(self) -> None:
        _forget_address(self)

    def connect_to(self, address: Any) -> None:
        """Connect to ``address``; forget it if that fails."""
        try:
            super().connect_to(address)  # type: ignore[no-untyped-call]
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send; forget the address if the connection failed."""
        try:
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """Read a reply; forget the address on a failure, READONLY or NOREPLICAS."""
        try:
            return super().read_response(*args, **kwargs)
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise


class _SentinelSSLConnection(_SentinelConnection, SentinelManagedSSLConnection):
    """``_SentinelConnection`` over TLS."""


class _AsyncSentinelConnection(AsyncSentinelConnection):
    """The asyncio twin of ``_SentinelConnection``."""

    def _forget(self) -> None:
        _forget_address(self)

    async def connect_to(self, address: Any) -> None:
        """Connect to ``address``; forget it if that fails."""
        try:
            await super().connect_to(address)  # type: ignore[no-untyped-call]
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send; forget the address if the connection failed."""
        try:
            await super().send_packed_command(command, check_health)
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """Read a reply; forget the address on a failure, READONLY or NOREPLICAS."""
        try:
            return await super().read_response(*args, **kwargs)
        except BaseException as exc:
            if _forgets_node(exc):
                self._forget()
            raise


class _AsyncSentinelSSLConnection(_AsyncSentinelConnection, AsyncSentinelSSLConnection):
    """``_AsyncSentinelConnection`` over TLS."""


class SentinelClient:
    """The clients of one Sentinel service, sync or asyncio, closed together.

    Every command goes to the primary that the sentinels name (asked again whenever a
    connection to the remembered primary fails; a demoted primary's READONLY becomes a
    ConnectionError). With ``read_from_replicas`` GETs go to a replica instead (redis-py
    falls back to the primary when no replica is up). ``close``/``aclose`` also close the
    connections to the sentinels.
    """

    def __init__(self, sentinel: Any, primary: Any, replica: Any | None,
                 service_name: str = "") -> None:
        self.sentinel = sentinel
        self.primary = primary
        self.replica = replica
        self.service_name = service_name
        # Bound once: attribute lookups stay as cheap as on a plain client.
        self.get = (replica if replica is not None else primary).get
        self.set = primary.set
        self.unlink = primary.unlink
        self.eval = primary.eval
        self.scan = primary.scan
        self.ping = primary.ping

    @classmethod
    def of(cls, sentinel: Any, location: Location, options: TargetOptions,
           connection_class: Any = None) -> SentinelClient:
        """Primary (and replica) clients of ``location``'s service through ``sentinel``."""
        name = location.service_name or ""
        pool: dict[str, Any] = {"db": location.db, "max_connections": options.max_connections}
        if connection_class is not None:
            pool["connection_class"] = connection_class
        primary = sentinel.master_for(name, **pool)
        replica = sentinel.slave_for(name, **pool) if location.read_from_replicas else None
        return cls(sentinel, primary, replica, name)

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


_SYNC = _Flavour(redis.Redis, _SyncRedisCluster, ClusterNode, _RememberingSentinel, Retry,
                 (_SentinelConnection, _SentinelSSLConnection))
_ASYNC_FLAVOUR = _Flavour(redis.asyncio.Redis, _AsyncRedisCluster, AsyncClusterNode,
                          _AsyncRememberingSentinel, AsyncRetry,
                          (_AsyncSentinelConnection, _AsyncSentinelSSLConnection))
