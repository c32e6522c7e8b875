"""A Redis (or Valkey) Cluster deployment (formed with ``redis-cli --cluster create``)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.cluster
from redis.crc import key_slot

from .common import (
    LOOPBACK,
    Address,
    Flavour,
    _Managed,
    _register,
    _text,
    _unregister,
    server_binaries,
    wait_until,
)
from .processes import (
    RedisServer,
    ServerStartError,
    _close_all,
    _replication_info,
    _wait_replicas_caught_up,
)


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of ``CLUSTER NODES``."""

    node_id: str
    host: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    link_state: str
    slots: tuple[tuple[int, int], ...] = field(default=())

    @property
    def is_primary(self) -> bool:
        """Flagged master (whether or not failed)."""
        return "master" in self.flags

    @property
    def is_failed(self) -> bool:
        """Flagged fail or fail? (pfail)."""
        return bool(self.flags & {"fail", "fail?"})

    @classmethod
    def parse(cls, line: str) -> ClusterNodeInfo:
        """Parse one ``CLUSTER NODES`` line (slot-migration entries are ignored)."""
        parts = line.split()
        endpoint = parts[1].split("@")[0]
        host, _, port = endpoint.rpartition(":")
        slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):
                continue
            start, _, end = item.partition("-")
            slots.append((int(start), int(end or start)))
        return cls(
            node_id=parts[0],
            host=host or LOOPBACK,
            port=int(port),
            flags=frozenset(parts[2].split(",")),
            primary_id=None if parts[3] == "-" else parts[3],
            link_state=parts[7],
            slots=tuple(slots),
        )

    def owns(self, slot: int) -> bool:
        """True if the slot is in one of this node's ranges."""
        return any(start <= slot <= end for start, end in self.slots)


class ClusterDeployment(_Managed):
    """A 6-node Redis Cluster (3 primaries, 3 replicas) on 127.0.0.1.

    Formed with ``redis-cli --cluster create``; start() returns once every node reports
    ``cluster_state:ok`` with all 16384 slots, all nodes see each other and replicas are
    synced.  Typical start ~2-3 s (Redis holds a new primary's state at "fail" for 2 s),
    promotion after a primary kill ~2.5 s (node timeout 1 s), ensure_healthy() after
    that ~0.2 s.  Clients: ``client()`` (redis-py RedisCluster); for cache_service use
    ``cluster_url`` (``redis+cluster://...``); ``url``/``urls`` are plain per-node
    ``redis://`` URLs and ``startup_nodes`` the (host, port) pairs.

    Tests that kill nodes of a shared deployment should call ensure_healthy() after.
    """

    def __init__(
        self,
        *,
        primaries: int = 3,
        replicas_per_primary: int = 1,
        node_timeout_ms: int = 1000,
        startup_timeout: float = 30.0,
        flavour: Flavour = "redis",
    ) -> None:
        self.flavour: Flavour = flavour
        self.num_primaries = primaries
        self.replicas_per_primary = replicas_per_primary
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout = startup_timeout
        self.nodes: list[RedisServer] = []
        self._closed = False
        _register(self)

    # -- addresses
    @property
    def startup_nodes(self) -> list[Address]:
        """(host, port) of every node."""
        return [n.address for n in self.nodes]

    @property
    def urls(self) -> list[str]:
        """``redis://127.0.0.1:P/0`` for every node."""
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """``redis://`` URL of the first node (any node is a cluster entry point)."""
        return self.nodes[0].url

    @property
    def cluster_url(self) -> str:
        """``redis+cluster://h:p,h:p,.../0`` listing every node (cache_service's syntax)."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.startup_nodes)
        return f"redis+cluster://{hosts}/0"

    def client(self, **overrides: Any) -> redis.cluster.RedisCluster:
        """A redis-py RedisCluster over all nodes (caller closes it)."""
        kwargs: dict[str, Any] = {
            "startup_nodes": [
                redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                for h, p in self.startup_nodes
            ],
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            "decode_responses": False,
        }
        kwargs.update(overrides)
        return redis.cluster.RedisCluster(**kwargs)

    # -- lifecycle
    def start(self) -> ClusterDeployment:
        """Start the nodes, form the cluster, wait until it is fully ok."""
        if self.nodes:
            return self
        total = self.num_primaries * (1 + self.replicas_per_primary)
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-replica-validity-factor", "0",  # a replica may always take over
            "--cluster-allow-replica-migration", "no",  # keep the topology predictable
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        for index in range(total):
            node = RedisServer(extra_args=args, name=f"cluster{index}", flavour=self.flavour)
            self.nodes.append(node)
            node.start()
        command = [
            server_binaries(self.flavour)[1], "--cluster", "create",
            *(f"{n.host}:{n.port}" for n in self.nodes),
            "--cluster-replicas", str(self.replicas_per_primary),
            "--cluster-yes",
        ]  # fmt: skip
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=self.startup_timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise ServerStartError(
                f"redis-cli --cluster create failed:\n{proc.stdout}\n{proc.stderr}\n{self._logs()}"
            )
        self._wait_healthy(self.startup_timeout)
        return self

    def close(self) -> None:
        """Kill all nodes and delete temp dirs (idempotent)."""
        if self._closed:
            return
        self._closed = True
        _close_all(self.nodes)
        _unregister(self)

    # -- topology
    def _live_nodes(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.is_running() and not n.is_frozen]

    def node_at(self, address: Address) -> RedisServer:
        """The node listening at ``address``."""
        node = self._find(address)
        if node is None:
            raise KeyError(address)
        return node

    def _find(self, address: Address) -> RedisServer | None:
        return next((n for n in self.nodes if n.address == address), None)

    def _running(self, info: ClusterNodeInfo) -> RedisServer | None:
        """The running, unfrozen node behind a CLUSTER NODES entry, else None."""
        node = self._find((info.host, info.port))
        if node is None or not node.is_running() or node.is_frozen:
            return None
        return node

    def cluster_nodes(self, view: RedisServer | None = None) -> list[ClusterNodeInfo]:
        """``CLUSTER NODES`` as seen by ``view`` (default: first live node)."""
        if view is None:
            live = self._live_nodes()
            if not live:
                raise RuntimeError("no live cluster node")
            view = live[0]
        with view._raw_client(socket_timeout=1.0) as client:
            text = _text(client.execute_command("CLUSTER", "NODES"))
        return [ClusterNodeInfo.parse(line) for line in text.splitlines() if line.strip()]

    def primaries(self) -> list[RedisServer]:
        """Running nodes that serve slots as primaries (per a live node's view)."""
        found = [
            self._running(i)
            for i in self.cluster_nodes()
            if i.is_primary and i.slots and not i.is_failed
        ]
        return [n for n in found if n is not None]

    def replicas(self) -> list[RedisServer]:
        """Running nodes flagged as replicas (per a live node's view)."""
        found = [self._running(i) for i in self.cluster_nodes() if "slave" in i.flags]
        return [n for n in found if n is not None]

    def primary_for_key(self, key: str | bytes) -> RedisServer:
        """The primary currently owning ``key``'s hash slot."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        for info in self.cluster_nodes():
            if info.is_primary and not info.is_failed and info.owns(slot):
                return self.node_at((info.host, info.port))
        raise LookupError(f"no healthy primary owns slot {slot}")

    def wait_for_replication(self, timeout: float = 5.0) -> None:
        """Wait until every live replica has applied all writes made so far on its primary."""
        infos = self.cluster_nodes()
        for info in infos:
            primary = self._running(info)
            if primary is None or not (info.is_primary and info.slots and not info.is_failed):
                continue
            found = [self._running(r) for r in infos if r.primary_id == info.node_id]
            _wait_replicas_caught_up(primary, [r for r in found if r is not None], timeout)

    # -- chaos
    def kill_primary(self, node: RedisServer) -> None:
        """SIGKILL a primary node (its replica should be promoted)."""
        node.kill()

    def kill_primary_for_key(self, key: str | bytes) -> RedisServer:
        """SIGKILL the primary owning ``key``; returns the killed node."""
        node = self.primary_for_key(key)
        self.kill_primary(node)
        return node

    def _slots_served(self, view: RedisServer) -> bool:
        """In ``view``'s table every slot is owned by a running, non-failed primary."""
        covered = 0
        for info in self.cluster_nodes(view):
            if not (info.is_primary and info.slots) or info.is_failed:
                continue
            if self._running(info) is None:
                return False
            covered += sum(end - start + 1 for start, end in info.slots)
        return covered == 16384

    def _state_ok(self, node: RedisServer) -> bool:
        with node._raw_client(socket_timeout=1.0) as client:
            info = _text(client.execute_command("CLUSTER", "INFO"))
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return (
            fields.get("cluster_state") == "ok"
            and fields.get("cluster_slots_assigned") == "16384"
            and fields.get("cluster_slots_ok") == "16384"
        )

    def wait_for_promotion(self, timeout: float = 20.0) -> list[RedisServer]:
        """Wait until every live node is ``cluster_state:ok`` and all slots are served by
        running primaries (i.e. replicas of killed primaries were promoted).
        Returns the primaries."""

        def promoted() -> bool:
            live = self._live_nodes()
            return bool(live) and all(self._state_ok(n) and self._slots_served(n) for n in live)

        wait_until(promoted, timeout, lambda: f"no promotion:\n{self._logs()}")
        return self.primaries()

    def _logs(self) -> str:
        return "\n".join(f"== {n!r}\n{n.log_tail(8)}" for n in self.nodes)

    def _fully_healthy(self) -> bool:
        total = len(self.nodes)
        for node in self.nodes:
            if not node.is_running() or not self._state_ok(node):
                return False
            infos = self.cluster_nodes(node)
            if len(infos) != total:
                return False
            if any(
                i.is_failed or "handshake" in i.flags or "noaddr" in i.flags
                or i.link_state != "connected"
                for i in infos
            ):  # fmt: skip
                return False
            if not self._slots_served(node):
                return False
            if "slave" in next(i for i in infos if "myself" in i.flags).flags:
                info = _replication_info(node)
                if info.get("master_link_status") != "up":
                    return False
        primaries = [i for i in self.cluster_nodes() if i.is_primary and i.slots]
        replicas = [i for i in self.cluster_nodes() if "slave" in i.flags]
        return all(
            sum(1 for r in replicas if r.primary_id == p.node_id) >= self.replicas_per_primary
            for p in primaries
        )

    def _wait_healthy(self, timeout: float) -> None:
        wait_until(self._fully_healthy, timeout, lambda: f"cluster not healthy:\n{self._logs()}")

    def ensure_healthy(self, timeout: float = 30.0) -> None:
        """Restore 3 primaries + 3 synced replicas after chaos (idempotent).

        Thaws frozen nodes, waits for a pending promotion, restarts dead nodes (empty,
        keeping ``nodes.conf``) - they rejoin as replicas of the promoted nodes.
        """
        for node in self.nodes:
            node.thaw()
        dead = [n for n in self.nodes if not n.is_running()]
        if dead and len(dead) < len(self.nodes):
            self.wait_for_promotion(timeout)
        for node in dead:
            node.restart(keep_data=False)
        self._wait_healthy(timeout)
