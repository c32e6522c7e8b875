"""``redis-server`` (or ``valkey-server``) processes: a standalone ``RedisServer`` (optionally
TLS) and a ``SentinelServer``, each in its own temp dir, plus replication helpers the
deployments use. ``flavour`` picks the server executable (see ``common.server_binaries``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import redis
import redis.cluster

from .common import (
    LOOPBACK,
    Address,
    Flavour,
    _Managed,
    _register,
    _unregister,
    no_retry,
    server_binaries,
    wait_until,
)
from .ports import _AVOID_PORTS, free_port
from .tls import TLSFiles


class ServerStartError(RuntimeError):
    """A redis-server / sentinel did not come up; the message includes its log tail."""

    def __init__(self, message: str, *, port_in_use: bool = False) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use


_P = TypeVar("_P", bound="_RedisProcess")


class _RedisProcess(_Managed):
    """Lifecycle of one ``redis-server`` process (plain or sentinel) in its own temp dir.

    Subclasses provide the argv.  The Popen handle is kept (``--daemonize no``) so the
    process can be killed, frozen (SIGSTOP) and always reaped (no zombies).
    """

    _cluster_bus = False

    def __init__(
        self, port: int | None, *, name: str, startup_timeout: float, flavour: Flavour = "redis"
    ) -> None:
        if port is not None and (port in _AVOID_PORTS or port <= 0):
            raise ValueError(f"refusing to use port {port}")
        self.flavour: Flavour = flavour
        self.server_binary: str = server_binaries(flavour)[0]
        self.host: str = LOOPBACK
        self._auto_port = port is None
        self.port: int = port if port is not None else free_port(cluster_bus=self._cluster_bus)
        self.name = name
        self.startup_timeout = startup_timeout
        self.dir: Path = Path(tempfile.mkdtemp(prefix=f"cache-service-{name}-"))
        self.logfile: Path = self.dir / "redis.log"
        self._stdout_path = self.dir / "stdout.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False
        self._closed = False
        self._ever_started = False
        _register(self)

    # -- to override
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self, *, first_start: bool) -> None:
        """Write config files before a spawn."""

    def connection_kwargs(self) -> dict[str, Any]:
        """redis-py kwargs (host, port, auth, TLS) to reach this process."""
        return {"host": self.host, "port": self.port}

    # -- info
    @property
    def address(self) -> Address:
        """(host, port) of this process."""
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        """PID of the running process, None when not running."""
        return self._proc.pid if self.is_running() and self._proc is not None else None

    def is_running(self) -> bool:
        """True while the process exists (also when frozen). Reaps it if it died."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def is_frozen(self) -> bool:
        """True between freeze() and thaw()."""
        return self._frozen and self.is_running()

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the server log and of its stdout/stderr (for error messages)."""
        chunks = []
        for path in (self.logfile, self._stdout_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    chunks.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(chunks) or "(no log output)"

    def client(self, **overrides: Any) -> redis.Redis:
        """A raw redis-py client: bytes replies, 2 s timeouts, no retries.

        Close it (``with server.client() as c``); RedisServer also closes it on close().
        """
        return self._raw_client(**overrides)

    def _raw_client(self, **overrides: Any) -> redis.Redis:
        kwargs: dict[str, Any] = {
            "db": 0,
            "decode_responses": False,
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            "retry": no_retry(),
            **self.connection_kwargs(),
        }
        kwargs.update(overrides)
        return redis.Redis(**kwargs)

    # -- lifecycle
    def start(self: _P) -> _P:
        """Spawn the process and wait until it answers PING (idempotent)."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self.is_running():
            return self
        attempts = 3 if (self._auto_port and not self._ever_started) else 1
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
            except ServerStartError as exc:
                if not exc.port_in_use or attempt == attempts - 1:
                    raise
                self.port = free_port(cluster_bus=self._cluster_bus)
            else:
                break
        return self

    def _spawn_and_wait(self) -> None:
        self._prepare(first_start=not self._ever_started)
        self._ever_started = True
        with self._stdout_path.open("ab") as out:
            self._proc = subprocess.Popen(
                self._argv(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        self._frozen = False
        try:
            self._wait_ready(self.startup_timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            code = proc.poll()
            if code is not None:
                tail = self.log_tail()
                raise ServerStartError(
                    f"{self!r} exited with code {code} during startup\n{tail}",
                    port_in_use="Address already in use" in tail,
                )
            try:
                with self._raw_client(socket_timeout=1.0, socket_connect_timeout=1.0) as probe:
                    info = probe.info("server")
                    # Never mistake somebody else's server on this port for ours.
                    if int(info.get("process_id", -1)) == proc.pid:
                        return
                    last_error = RuntimeError(f"port {self.port} answered by another process")
            except (redis.RedisError, OSError) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self!r} did not answer within {timeout:.1f}s "
                    f"(last error: {last_error!r})\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the process (works when frozen too) and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        proc.wait(timeout=10)
        self._frozen = False

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop: SIGTERM (after SIGCONT if frozen), SIGKILL after ``timeout``."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self.thaw()
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets open but answers nothing."""
        if self._proc is not None and self.is_running():
            os.kill(self._proc.pid, signal.SIGSTOP)
            self._frozen = True

    def thaw(self) -> None:
        """SIGCONT after freeze()."""
        if self._proc is not None and self.is_running() and self._frozen:
            os.kill(self._proc.pid, signal.SIGCONT)
        self._frozen = False

    def close(self) -> None:
        """Kill the process and delete its temp dir (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            _unregister(self)

    def __repr__(self) -> str:
        state = "frozen" if self.is_frozen else ("running" if self.is_running() else "stopped")
        return f"<{type(self).__name__} {self.name} {self.host}:{self.port} {state}>"


class RedisServer(_RedisProcess):
    """One standalone ``redis-server`` (``flavour="valkey"``: ``valkey-server``) on 127.0.0.1.

    Data is not persisted (``--save "" --appendonly no``) unless ``durable=True``
    (AOF with fsync always, so even kill() keeps acknowledged writes).  restart() on the
    same port can keep data by running SAVE before the SIGKILL.  ``--enable-debug-command
    local`` is on, so tests may use ``DEBUG SLEEP`` to simulate a slow server.

    The command line is the source of truth: ``redis.conf`` in the temp dir exists only so
    ``CONFIG REWRITE`` (used by sentinel) succeeds, and is reset on every (re)start.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        acl_user: tuple[str, str] | None = None,
        tls: TLSFiles | None = None,
        durable: bool = False,
        extra_args: Iterable[str] = (),
        name: str = "redis",
        startup_timeout: float = 10.0,
        unixsocket: bool = False,
        flavour: Flavour = "redis",
    ) -> None:
        args = list(extra_args)
        self._cluster_bus = "--cluster-enabled" in args
        super().__init__(port, name=name, startup_timeout=startup_timeout, flavour=flavour)
        # With ``unixsocket=True`` the server also listens on ``redis.sock`` in its temp dir.
        self.unixsocket: str | None = str(self.dir / "redis.sock") if unixsocket else None
        self.password = password
        self.acl_user = acl_user
        self.tls = tls
        self.durable = durable
        self.extra_args: list[str] = args
        self._clients: weakref.WeakSet[redis.Redis] = weakref.WeakSet()

    @property
    def scheme(self) -> str:
        """``rediss`` with TLS, else ``redis``."""
        return "rediss" if self.tls else "redis"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (``rediss://`` with TLS), without credentials."""
        return f"{self.scheme}://{self.host}:{self.port}/0"

    @property
    def url_with_credentials(self) -> str:
        """Like ``url`` but with the ACL user (or else the password) embedded."""
        if self.acl_user is not None:
            user, password = self.acl_user
            creds = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        elif self.password is not None:
            creds = f":{quote(self.password, safe='')}@"
        else:
            creds = ""
        return f"{self.scheme}://{creds}{self.host}:{self.port}/0"

    def connection_kwargs(self) -> dict[str, Any]:
        """redis-py kwargs for the default user (password) and TLS (CA + client cert)."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.password is not None:
            kwargs["password"] = self.password
        if self.tls is not None:
            kwargs |= self.tls.redis_kwargs()
        return kwargs

    def client(self, **overrides: Any) -> redis.Redis:
        """A raw redis-py client: bytes replies, 2 s timeouts, no retries, auth/TLS set.

        Close it (``with server.client() as c``); it is also closed by close().
        """
        client = self._raw_client(**overrides)
        self._clients.add(client)
        return client

    def _prepare(self, *, first_start: bool) -> None:
        (self.dir / "redis.conf").write_text("# generated by tests/servers.py; argv rules\n")

    def _argv(self) -> list[str]:
        args = [
            self.server_binary, str(self.dir / "redis.conf"),
            "--bind", self.host,
            "--dir", str(self.dir),
            "--logfile", str(self.logfile),
            "--daemonize", "no",
            "--dbfilename", "dump.rdb",
            "--save", "",
            "--enable-debug-command", "local",
        ]  # fmt: skip
        if self.durable:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.tls is not None:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", self.tls.server_cert,
                "--tls-key-file", self.tls.server_key,
                "--tls-ca-cert-file", self.tls.ca_cert,
                "--tls-auth-clients", "optional",
            ]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.unixsocket is not None:
            args += ["--unixsocket", self.unixsocket, "--unixsocketperm", "700"]
        if self.acl_user is not None:
            user, password = self.acl_user
            args += ["--user", user, "on", f">{password}", "~*", "&*", "+@all"]
        return args + self.extra_args

    def save(self) -> None:
        """Synchronous SAVE to ``dump.rdb`` in the temp dir."""
        with self._raw_client(socket_timeout=30.0) as admin:
            admin.save()

    def wipe_data(self) -> None:
        """Delete persisted data (RDB/AOF) - not cluster ``nodes.conf``. Server must be down."""
        if self.is_running():
            raise RuntimeError("wipe_data() needs a stopped server")
        for pattern in ("dump.rdb", "temp-*.rdb"):
            for path in self.dir.glob(pattern):
                path.unlink(missing_ok=True)
        shutil.rmtree(self.dir / "appendonlydir", ignore_errors=True)

    def restart(self, keep_data: bool = True, *, timeout: float | None = None) -> None:
        """Restart on the SAME port and dir.

        ``keep_data=True``: a running server is thawed and SAVEd, then SIGKILLed; it loads
        that dump on start.  (A server that is already down comes back with whatever was
        persisted.)  ``keep_data=False``: it comes back empty.
        """
        if self.is_running():
            if keep_data:
                self.thaw()
                self.save()
            self.kill()
        if not keep_data:
            self.wipe_data()
        if timeout is not None:
            self.startup_timeout = timeout
        self.start()

    def role(self) -> str:
        """``master`` or ``slave`` (INFO replication)."""
        with self._raw_client() as admin:
            return str(admin.info("replication")["role"])

    def close(self) -> None:
        """Close clients made by client(), kill, delete the temp dir."""
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        super().close()


class SentinelServer(_RedisProcess):
    """One ``redis-server <conf> --sentinel`` process.

    The config is written once; sentinel rewrites it with its state, so a restart()
    keeps what it learned.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        config: str,
        startup_timeout: float = 10.0,
        flavour: Flavour = "redis",
    ) -> None:
        super().__init__(port, name="sentinel", startup_timeout=startup_timeout, flavour=flavour)
        self.config_path = self.dir / "sentinel.conf"
        self._config = config

    def _prepare(self, *, first_start: bool) -> None:
        if first_start:
            header = (
                f"port {self.port}\nbind {self.host}\ndir {self.dir}\n"
                f"logfile {self.logfile}\ndaemonize no\n"
            )
            self.config_path.write_text(header + self._config)

    def _argv(self) -> list[str]:
        return [self.server_binary, str(self.config_path), "--sentinel"]

    def restart(self) -> None:
        """SIGKILL and start again with the (rewritten) config on the same port."""
        self.kill()
        self.start()


def _replication_info(server: RedisServer) -> dict[str, Any]:
    with server._raw_client(socket_timeout=1.0) as admin:
        return dict(admin.info("replication"))


def _wait_replicas_caught_up(
    primary: RedisServer, replicas: Iterable[RedisServer], timeout: float
) -> None:
    """Wait until every replica has processed the primary's current replication offset."""
    offset = int(_replication_info(primary)["master_repl_offset"])

    def caught_up() -> bool:
        for replica in replicas:
            info = _replication_info(replica)
            if info.get("master_link_status") != "up":
                return False
            if int(info.get("slave_repl_offset", -1)) < offset:
                return False
        return True

    wait_until(caught_up, timeout, f"replicas of {primary!r} did not reach offset {offset}")


def _set_replicaof(server: RedisServer, primary: Address | None) -> None:
    """Rewrite ``--replicaof host port`` in a server's extra_args (None removes it)."""
    args = server.extra_args
    cleaned: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--replicaof":
            i += 3
            continue
        cleaned.append(args[i])
        i += 1
    if primary is not None:
        cleaned += ["--replicaof", primary[0], str(primary[1])]
    server.extra_args = cleaned


def _close_all(objects: Iterable[_Managed]) -> None:
    for obj in objects:
        with contextlib.suppress(Exception):
            obj.close()
