"""Free loopback ports for the servers the suite starts (never 6379 nor other services')."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from .common import CLUSTER_BUS_OFFSET, LOOPBACK, _rng

# Ports used by common local services (and Redis' own defaults) that we never hand out.
_AVOID_PORTS = frozenset(
    {6379, 6380, 16379, 26379, 15672, 25672, 27017, 27018, 28017, 11211, 9200, 9300}
)
_PORT_LOW = 12000
_handed_out: set[int] = set()
_port_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _os_assigned_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port(*, cluster_bus: bool = False) -> int:
    """Return a currently free loopback TCP port that this process has not handed out yet.

    Ports are drawn at random from below the kernel's ephemeral range (so a client's
    outgoing connection can't grab a port between a server's kill and restart), and
    verified by binding.  With ``cluster_bus=True`` the port + 10000 (the cluster bus)
    is free too.  6379 and other well-known service ports are never returned.
    """
    offset = CLUSTER_BUS_OFFSET if cluster_bus else 0
    high = min(_ephemeral_low(), 65536) - 1 - offset
    use_range = high - _PORT_LOW > 1000
    with _port_lock:
        for _ in range(500):
            port = _rng.randint(_PORT_LOW, high) if use_range else _os_assigned_port()
            candidates = [port, port + offset] if cluster_bus else [port]
            if any(
                p in _handed_out or p in _AVOID_PORTS or p < 1024 or p > 65535 for p in candidates
            ):
                continue
            if not all(_can_bind(p) for p in candidates):
                continue
            _handed_out.update(candidates)
            return port
    raise RuntimeError("could not find a free loopback port")
