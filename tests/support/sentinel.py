"""A Sentinel deployment: one primary, one replica and three sentinels, with failover."""

from __future__ import annotations

from typing import Any

import redis
import redis.cluster

from .common import (
    LOOPBACK,
    Address,
    Flavour,
    _Managed,
    _pairs,
    _register,
    _rng,
    _text,
    _unregister,
    wait_until,
)
from .ports import free_port
from .processes import (
    RedisServer,
    SentinelServer,
    ServerStartError,
    _close_all,
    _replication_info,
    _set_replicaof,
    _wait_replicas_caught_up,
)


class SentinelDeployment(_Managed):
    """One primary, one replica and three sentinels, all on 127.0.0.1.

    Sentinels are pre-seeded with each other's ids and the replica (``known-sentinel`` /
    ``known-replica``) so there's no discovery delay; start() returns once every
    sentinel agrees on the primary, sees the replica up and reaches quorum.  Typical
    start ~1.3 s; wait_for_failover() after kill_primary() ~2 s (down-after 500 ms; up
    to ~8 s if the sentinels' first leader election splits); ensure_healthy() ~1.2 s.

    Tests that kill nodes of a shared deployment should call ensure_healthy() after.
    """

    def __init__(
        self,
        service_name: str = "mymaster",
        *,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 3000,
        quorum: int = 2,
        num_sentinels: int = 3,
        startup_timeout: float = 15.0,
        flavour: Flavour = "redis",
    ) -> None:
        self.flavour: Flavour = flavour
        self.service_name = service_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.quorum = quorum
        self.num_sentinels = num_sentinels
        self.startup_timeout = startup_timeout
        self.servers: list[RedisServer] = []
        self.sentinel_servers: list[SentinelServer] = []
        self._closed = False
        _register(self)

    # -- addresses
    @property
    def sentinels(self) -> list[Address]:
        """(host, port) of every sentinel."""
        return [s.address for s in self.sentinel_servers]

    @property
    def url(self) -> str:
        """``redis+sentinel://h:p,h:p,h:p/<service_name>/0``."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service_name}/0"

    # -- lifecycle
    def start(self) -> SentinelDeployment:
        """Start primary, replica (synced), then sentinels; wait until failover-ready."""
        if self.servers:
            return self
        data_args = ["--repl-diskless-sync-delay", "0"]
        primary = RedisServer(extra_args=data_args, name="sentinel-primary", flavour=self.flavour)
        self.servers.append(primary)
        primary.start()
        replica = RedisServer(extra_args=data_args, name="sentinel-replica", flavour=self.flavour)
        _set_replicaof(replica, primary.address)
        self.servers.append(replica)
        replica.start()
        self._wait_replication_online(primary, [replica], self.startup_timeout)
        for attempt in range(3):
            try:
                self._start_sentinels(primary, replica)
                break
            except ServerStartError as exc:
                _close_all(self.sentinel_servers)
                self.sentinel_servers = []
                if not exc.port_in_use or attempt == 2:
                    raise
        self._wait_sentinels_ready(self.startup_timeout)
        return self

    def _start_sentinels(self, primary: RedisServer, replica: RedisServer) -> None:
        ports = [free_port() for _ in range(self.num_sentinels)]
        ids = [f"{_rng.getrandbits(160):040x}" for _ in ports]
        for index, port in enumerate(ports):
            name = self.service_name
            lines = [
                f"sentinel myid {ids[index]}",
                "sentinel resolve-hostnames no",
                "sentinel announce-hostnames no",
                f"sentinel monitor {name} {primary.host} {primary.port} {self.quorum}",
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {name} 1",
                f"sentinel known-replica {name} {replica.host} {replica.port}",
            ]
            lines += [
                f"sentinel known-sentinel {name} {LOOPBACK} {other_port} {ids[other]}"
                for other, other_port in enumerate(ports)
                if other != index
            ]
            sentinel = SentinelServer(port, config="\n".join(lines) + "\n", flavour=self.flavour)
            self.sentinel_servers.append(sentinel)
        for sentinel in self.sentinel_servers:
            sentinel.start()

    @staticmethod
    def _wait_replication_online(
        primary: RedisServer, replicas: list[RedisServer], timeout: float
    ) -> None:
        wanted = {r.port for r in replicas}

        def online() -> bool:
            info = _replication_info(primary)
            ports = {
                int(v["port"])
                for k, v in info.items()
                if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
            }
            if not wanted <= ports:
                return False
            return all(_replication_info(r).get("master_link_status") == "up" for r in replicas)

        wait_until(online, timeout, f"replicas {sorted(wanted)} not online on {primary!r}")

    def _sentinel_call(self, sentinel: SentinelServer, *args: str) -> Any:
        with sentinel._raw_client(socket_timeout=1.0) as client:
            return client.execute_command("SENTINEL", *args)

    def _sentinel_ready(self, sentinel: SentinelServer, primary: Address) -> bool:
        name = self.service_name
        if self._ask_primary(sentinel) != primary:
            return False
        self._sentinel_call(sentinel, "CKQUORUM", name)  # raises ResponseError if no quorum
        live_replicas = {s.address for s in self.servers if s.is_running()} - {primary}
        seen = {
            (d["ip"], int(d["port"])): d
            for d in map(_pairs, self._sentinel_call(sentinel, "REPLICAS", name))
        }
        for address in live_replicas:
            entry = seen.get(address)
            if entry is None or entry["flags"] != "slave" or entry["master-link-status"] != "ok":
                return False
            if (entry["master-host"], int(entry["master-port"])) != primary:
                return False
        others = [_pairs(x) for x in self._sentinel_call(sentinel, "SENTINELS", name)]
        live_sentinels = sum(1 for s in self.sentinel_servers if s.is_running()) - 1
        # "master_down" is a stale vote from the last failover; harmless.
        healthy = [
            o for o in others if set(o["flags"].split(",")) - {"master_down"} == {"sentinel"}
        ]
        return len(healthy) >= live_sentinels

    def _wait_sentinels_ready(self, timeout: float) -> None:
        def ready() -> bool:
            primary = self.primary_address()
            live = [s for s in self.sentinel_servers if s.is_running()]
            return all(self._sentinel_ready(s, primary) for s in live)

        wait_until(ready, timeout, lambda: f"sentinels not ready:\n{self._logs()}")

    def _logs(self) -> str:
        return "\n".join(f"== {s!r}\n{s.log_tail(15)}" for s in self.sentinel_servers)

    # -- queries
    def _ask_primary(self, sentinel: SentinelServer) -> Address | None:
        reply = self._sentinel_call(sentinel, "GET-MASTER-ADDR-BY-NAME", self.service_name)
        if not reply:
            return None
        return (_text(reply[0]), int(reply[1]))

    def primary_address(self) -> Address:
        """Current primary according to the first reachable sentinel."""
        errors = []
        for sentinel in self.sentinel_servers:
            if not sentinel.is_running() or sentinel.is_frozen:
                continue
            try:
                address = self._ask_primary(sentinel)
            except (redis.RedisError, OSError) as exc:
                errors.append(exc)
                continue
            if address is not None:
                return address
        raise RuntimeError(f"no sentinel could name the primary: {errors!r}")

    def server_for(self, address: Address) -> RedisServer:
        """The RedisServer listening at ``address``."""
        for server in self.servers:
            if server.address == address:
                return server
        raise KeyError(address)

    def primary(self) -> RedisServer:
        """The RedisServer the sentinels currently name as primary."""
        return self.server_for(self.primary_address())

    def replicas(self) -> list[RedisServer]:
        """Data servers other than the current primary (running or not)."""
        primary = self.primary_address()
        return [s for s in self.servers if s.address != primary]

    def sentinel_client(self, index: int = 0, **overrides: Any) -> redis.Redis:
        """Raw client to one sentinel (caller closes it)."""
        return self.sentinel_servers[index].client(**overrides)

    def wait_for_replication(self, timeout: float = 5.0) -> None:
        """Wait until live replicas have applied every write made so far on the primary."""
        primary = self.primary()
        live = [s for s in self.servers if s is not primary and s.is_running()]
        _wait_replicas_caught_up(primary, live, timeout)

    # -- chaos
    def kill_primary(self) -> Address:
        """SIGKILL the current primary; returns its address (pass it to wait_for_failover)."""
        address = self.primary_address()
        self.server_for(address).kill()
        return address

    def wait_for_failover(self, old_address: Address, timeout: float = 20.0) -> Address:
        """Wait until all live sentinels name a new, running primary that reports role master."""
        result: list[Address] = []

        def switched() -> bool:
            live = [s for s in self.sentinel_servers if s.is_running() and not s.is_frozen]
            answers = {self._ask_primary(s) for s in live}
            if len(answers) != 1:
                return False
            (address,) = answers
            if address is None or address == old_address:
                return False
            server = self.server_for(address)
            if not server.is_running() or server.role() != "master":
                return False
            result.append(address)
            return True

        wait_until(
            switched, timeout, lambda: f"no failover away from {old_address}:\n{self._logs()}"
        )
        return result[-1]

    def ensure_healthy(self, timeout: float = 30.0) -> None:
        """Restore 1 primary + synced replica + all sentinels after chaos (idempotent).

        Thaws frozen processes, restarts dead sentinels, finishes a pending failover,
        restarts dead data servers (empty) as replicas of the current primary.
        """
        for process in [*self.sentinel_servers, *self.servers]:
            process.thaw()
        for sentinel in self.sentinel_servers:
            if not sentinel.is_running():
                sentinel.start()
        primary_address = self.primary_address()
        primary = self.server_for(primary_address)
        if not primary.is_running():
            if any(s.is_running() for s in self.servers):
                primary_address = self.wait_for_failover(primary_address, timeout)
                primary = self.server_for(primary_address)
            else:
                primary.start()
        for server in self.servers:
            if server is primary:
                _set_replicaof(server, None)  # so a later plain restart() keeps it primary
                continue
            _set_replicaof(server, primary.address)
            if not server.is_running():
                server.restart(keep_data=False)
            elif server.role() == "master":
                # A stale primary (e.g. thawed after a failover); sentinel would only
                # demote it after ~8 s, so do it now.
                with server._raw_client() as admin:
                    admin.execute_command("REPLICAOF", primary.host, str(primary.port))
        replicas = [s for s in self.servers if s is not primary]
        self._wait_replication_online(primary, replicas, timeout)
        self._wait_sentinels_ready(timeout)

    def close(self) -> None:
        """Kill everything and delete temp dirs (idempotent)."""
        if self._closed:
            return
        self._closed = True
        _close_all([*self.sentinel_servers, *self.servers])
        _unregister(self)
