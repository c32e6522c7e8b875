"""Our own Redis connection layer (issue 18): a sans-I/O RESP core on hiredis and two drivers.

(design notes: filled in below)
"""

from __future__ import annotations

from .async_conn import AsyncConnection, connect
from .errors import (
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
from .settings import TLSSettings, WireSettings
from .sync_conn import SyncConnection, ThreadConnections

__all__ = [
    "AsyncConnection",
    "ConnectFailed",
    "ConnectionLost",
    "ConnectivityError",
    "EncodeError",
    "HandshakeError",
    "ProtocolError",
    "ReplyError",
    "SyncConnection",
    "TLSSettings",
    "ThreadConnections",
    "WireError",
    "WireSettings",
    "WireTimeout",
    "connect",
]
