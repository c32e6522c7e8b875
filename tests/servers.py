"""Test infrastructure: real Redis deployments and a fault-injecting TCP proxy.

A thin re-export of ``tests/support/`` (one module per deployment: ``ports``, ``tls``,
``processes``, ``sentinel``, ``cluster``, ``chaos_proxy``), so that ``from tests.servers
import X`` keeps working everywhere (tests, benchmarks, helper processes).
"""

from __future__ import annotations

from .support.chaos_proxy import ChaosProxy
from .support.cluster import ClusterDeployment, ClusterNodeInfo
from .support.common import (
    FLAVOURS,
    LOOPBACK,
    REDIS_CLI,
    REDIS_SERVER,
    Flavour,
    flavour_available,
    no_retry,
    server_binaries,
    wait_until,
)
from .support.ports import free_port
from .support.processes import RedisServer, SentinelServer, ServerStartError
from .support.sentinel import SentinelDeployment
from .support.tls import TLSFiles, make_tls_files

__all__ = [
    "FLAVOURS",
    "LOOPBACK",
    "REDIS_CLI",
    "REDIS_SERVER",
    "ChaosProxy",
    "ClusterDeployment",
    "ClusterNodeInfo",
    "Flavour",
    "RedisServer",
    "SentinelDeployment",
    "SentinelServer",
    "ServerStartError",
    "TLSFiles",
    "flavour_available",
    "free_port",
    "make_tls_files",
    "no_retry",
    "server_binaries",
    "wait_until",
]
