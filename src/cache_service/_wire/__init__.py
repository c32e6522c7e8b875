"""Our own Redis connection layer (issue 18): a sans-I/O RESP core on hiredis and two drivers.

Private; the services use it with ``connection="wire"``: for a standalone Redis through the
redis-py-shaped clients of ``_redis/wire_client.py``, for Sentinel through
``_redis/wire_sentinel*.py`` and for Cluster through ``_redis/wire_cluster*.py``; the near
cache's tracking links use it on every path. No redis-py in it. What each module holds
(each imports only those above it)::

    errors.py      the error tree, classified at the source: connectivity (ConnectFailed,
                   HandshakeError, ConnectionLost > WireTimeout, ProtocolError) vs an error reply
                   (ReplyError, a value with its code) vs client-side (EncodeError)
    settings.py    WireSettings (address or unix path, TLS, credentials, db, name, RESP2/3,
                   connect and request deadlines) and the ssl context built from them
    protocol.py    the sans-I/O core (the h11 shape): encode_command (hiredis' C packer; types
                   checked, nothing queued on refusal), RespCore (hiredis.Reader with its own
                   reply-error class and no-data sentinel, pushes to a handler, the FIFO of
                   Pending requests, a cancelled request's replies read and dropped), and the
                   handshake as a generator of request batches (HELLO with AUTH and SETNAME
                   inside, SELECT; AUTH + CLIENT SETNAME for a server without HELLO)
    sync_conn.py   SyncConnection (blocking; the lean path: encode, sendall, recv_into a kept
                   buffer, feed, gets) and ThreadConnections (one connection per thread)
    sockread.py    non-blocking reads that keep the GIL (libc ``recv`` through ctypes)
    push_conn.py   PushConnection: RESP3, sends without waiting, reads what arrived without
                   blocking (pushes to a handler); the near cache's tracking links
    async_conn.py  AsyncConnection on asyncio.Protocol with automatic pipelining, an in-flight
                   window, one deadline timer per connection; connect()

Rules both drivers keep: a request past its deadline raises WireTimeout and its connection is
dropped (never reused), failing every other request in flight on it at once; a lost connection
fails everything in flight; an error reply is that request's (a ReplyError raised by execute,
a value inside a pipeline's replies). Not here yet: pub/sub (a RESP3 subscribe confirmation is a
push frame, so it would reach the push handler, not its request), RESP3 attribute frames (hiredis
returns them as a separate reply); Cluster routing lives above it (``_redis/slots.py``).

Why the asyncio driver writes once per loop iteration. Requests append their bytes to a list;
the first of an iteration schedules the flush with ``loop.call_soon``. Writing each request at
once (the transport tries a ``send`` per request) was measured against it with
``benchmarks/bench_wire.py --quick`` (2 cores shared with other work, so absolute figures are
high; ratios in one run, default loop, throughput vs redis.asyncio with its pool):

    tasks   one write per iteration   a write per request
    1       1.1-1.3x                  1.2-1.3x
    10      3.5-4.0x                  4.3-4.8x
    100     9.0-10.8x                 4.7-5.2x
    1000    12.9-14.8x                6.3-6.7x

Under load it halves the system calls and doubles the throughput; alone it costs nothing
measurable. (Writing at once only when the connection is idle measured the same as either.)
Deadlines use one ``loop.call_at`` timer per connection, re-armed for the earliest deadline in
flight when it fires, instead of a timer (or ``asyncio.wait_for``) per request.

Why one connection per thread for the blocking driver: a ``threading.local`` lookup costs a
fraction of a microsecond; a checkout pool takes a lock, pops and pushes back on every call and
makes threads queue on that lock. Measured (same run): SyncConnection GET 0.58-0.65x raw
redis-py, through ThreadConnections 0.69-0.76x, SET 0.62-0.69x (targets: get <= 0.75x, set <=
0.85x). The price is a connection per thread that uses it; it is remade after a failure and
in a forked child.
"""

from __future__ import annotations

from cache_service._wire.async_conn import AsyncConnection, connect
from cache_service._wire.errors import (
    ConnectFailed,
    ConnectionLost,
    ConnectivityError,
    EncodeError,
    HandshakeError,
    ProtocolError,
    ReplyError,
    WireError,
    WireTimeout,
)
from cache_service._wire.push_conn import PushConnection
from cache_service._wire.settings import TLSSettings, WireSettings
from cache_service._wire.sync_conn import SyncConnection, ThreadConnections

__all__ = [
    "AsyncConnection",
    "ConnectFailed",
    "ConnectionLost",
    "ConnectivityError",
    "EncodeError",
    "HandshakeError",
    "ProtocolError",
    "PushConnection",
    "ReplyError",
    "SyncConnection",
    "TLSSettings",
    "ThreadConnections",
    "WireError",
    "WireSettings",
    "WireTimeout",
    "connect",
]
