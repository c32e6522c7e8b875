"""Real Redis processes and network chaos for integration tests.

Everything here starts *real* ``redis-server`` processes (standalone, TLS, sentinel,
cluster) in throw-away temp dirs on free loopback ports, plus a TCP proxy that can
cut, hang or slow down connections.  Nothing ever talks to a server it did not start:
ports come from :func:`free_port` (never 6379) and every readiness probe checks that
the answering server reports the PID of the process we spawned.

Every object is a context manager, ``close()`` is idempotent, and anything still
alive at interpreter exit is killed by an ``atexit`` hook, so a failing test never
leaks processes or temp dirs.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import errno
import os
import random
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

__all__ = [
    "LOOPBACK",
    "REDIS_CLI",
    "REDIS_SERVER",
    "ChaosProxy",
    "ClusterDeployment",
    "ClusterNodeInfo",
    "RedisServer",
    "SentinelDeployment",
    "SentinelServer",
    "ServerStartError",
    "TLSFiles",
    "free_port",
    "make_tls_files",
    "no_retry",
    "wait_until",
]

LOOPBACK = "127.0.0.1"
REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server") or "redis-server"
REDIS_CLI = os.environ.get("REDIS_CLI_BIN") or shutil.which("redis-cli") or "redis-cli"
CLUSTER_BUS_OFFSET = 10000
"""Redis cluster bus port = client port + 10000."""

Address = tuple[str, int]


# --------------------------------------------------------------------------- helpers


def no_retry() -> Retry:
    """A redis-py Retry that never retries (redis-py >= 6 retries 10x by default)."""
    return Retry(NoBackoff(), 0)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    message: str | Callable[[], str],
    *,
    interval: float = 0.05,
) -> None:
    """Poll ``predicate`` until it is true; raise TimeoutError with ``message`` otherwise.

    Redis/OS errors raised by the predicate count as "not yet" and are reported.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            suffix = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s: {text}{suffix}")
        time.sleep(interval)


class _Managed(abc.ABC):
    """Startable/closable resource: a context manager, registered for atexit cleanup."""

    @abc.abstractmethod
    def start(self) -> object:
        """Start the resource (idempotent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything (idempotent)."""

    def __enter__(self: _M) -> _M:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_M = TypeVar("_M", bound=_Managed)
_LIVE: dict[int, _Managed] = {}
_LIVE_LOCK = threading.Lock()


def _register(obj: _Managed) -> None:
    with _LIVE_LOCK:
        _LIVE[id(obj)] = obj


def _unregister(obj: _Managed) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(id(obj), None)


@atexit.register
def _close_everything() -> None:
    """Last-resort cleanup: kill every process and proxy this module started."""
    with _LIVE_LOCK:
        objects = list(_LIVE.values())
    for obj in reversed(objects):
        with contextlib.suppress(Exception):
            obj.close()


# --------------------------------------------------------------------------- ports

# Ports used by common local services (and Redis' own defaults) that we never hand out.
_AVOID_PORTS = frozenset(
    {6379, 6380, 16379, 26379, 15672, 25672, 27017, 27018, 28017, 11211, 9200, 9300}
)
_PORT_LOW = 12000
_handed_out: set[int] = set()
_port_lock = threading.Lock()
_rng = random.SystemRandom()  # independent of test seeding: parallel runs pick differently


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


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TLSFiles:
    """Paths of a throw-away CA plus server and client certificates (PEM, EC P-256)."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    def redis_kwargs(self, *, client_cert: bool = True) -> dict[str, Any]:
        """redis-py connection kwargs for a ``rediss://`` connection verifying our CA."""
        kwargs: dict[str, Any] = {"ssl": True, "ssl_ca_certs": self.ca_cert}
        if client_cert:
            kwargs |= {"ssl_certfile": self.client_cert, "ssl_keyfile": self.client_key}
        return kwargs


_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = cache-service-test
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def make_tls_files(directory: str | os.PathLike[str]) -> TLSFiles:
    """Create a CA and server/client certs for 127.0.0.1/localhost in ``directory``.

    Uses the openssl CLI with EC P-256 keys (fast, ~0.1 s).  Extensions satisfy
    OpenSSL/Python strict X.509 verification (key usage, SKI/AKI, SAN).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", "-config", str(config), "-extensions", "ca_ext", *ec,
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
        "-subj", "/CN=cache-service test CA", cwd=out,
    )  # fmt: skip
    for name, subject in (("server", "/CN=localhost"), ("client", "/CN=cache-service-client")):
        _openssl(
            "req", "-new", "-config", str(config), *ec,
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=out,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(_rng.randint(1, 2**62)), "-days", "7",
            "-extfile", str(config), "-extensions", f"{name}_ext", "-out", f"{name}.crt",
            cwd=out,
        )  # fmt: skip
    return TLSFiles(
        ca_cert=str(out / "ca.crt"),
        server_cert=str(out / "server.crt"),
        server_key=str(out / "server.key"),
        client_cert=str(out / "client.crt"),
        client_key=str(out / "client.key"),
    )


# --------------------------------------------------------------------------- processes


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

    def __init__(self, port: int | None, *, name: str, startup_timeout: float) -> None:
        if port is not None and (port in _AVOID_PORTS or port <= 0):
            raise ValueError(f"refusing to use port {port}")
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
    """One standalone ``redis-server`` on 127.0.0.1.

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
    ) -> None:
        args = list(extra_args)
        self._cluster_bus = "--cluster-enabled" in args
        super().__init__(port, name=name, startup_timeout=startup_timeout)
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
            REDIS_SERVER, str(self.dir / "redis.conf"),
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
        self, port: int | None = None, *, config: str, startup_timeout: float = 10.0
    ) -> None:
        super().__init__(port, name="sentinel", startup_timeout=startup_timeout)
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
        return [REDIS_SERVER, str(self.config_path), "--sentinel"]

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


# --------------------------------------------------------------------------- sentinel


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
    ) -> None:
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
        primary = RedisServer(extra_args=data_args, name="sentinel-primary")
        self.servers.append(primary)
        primary.start()
        replica = RedisServer(extra_args=data_args, name="sentinel-replica")
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
            sentinel = SentinelServer(port, config="\n".join(lines) + "\n")
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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Any) -> dict[str, str]:
    """Turn a RESP2 flat [k, v, k, v] (or RESP3 map) reply into a str dict."""
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    items = list(flat)
    return {_text(items[i]): _text(items[i + 1]) for i in range(0, len(items), 2)}


# --------------------------------------------------------------------------- cluster


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
    ) -> None:
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
            node = RedisServer(extra_args=args, name=f"cluster{index}")
            self.nodes.append(node)
            node.start()
        command = [
            REDIS_CLI, "--cluster", "create",
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


# --------------------------------------------------------------------------- chaos proxy

ProxyMode = Literal["normal", "cut", "hang"]
_Side = Literal["client", "upstream"]


@dataclass(eq=False)
class _Link:
    """One proxied connection: client socket <-> upstream socket plus delayed queues."""

    client: socket.socket
    upstream: socket.socket | None = None
    connecting: bool = False
    hung: bool = False
    to_upstream: deque[tuple[float, bytes]] = field(default_factory=deque)
    to_client: deque[tuple[float, bytes]] = field(default_factory=deque)
    queued_up: int = 0
    queued_down: int = 0
    client_eof: bool = False
    upstream_eof: bool = False
    want_write: dict[str, bool] = field(
        default_factory=lambda: {"client": False, "upstream": False}
    )
    events: dict[str, int] = field(default_factory=lambda: {"client": 0, "upstream": 0})
    callbacks: dict[str, Callable[[int], None]] = field(default_factory=dict)
    spared: bool = False  # latency does not apply (see ``ChaosProxy.latency``)


_Command = tuple[Callable[[], None], threading.Event, list[BaseException]]


class ChaosProxy(_Managed):
    """TCP proxy on a free loopback port in front of (host, port), for fault injection.

    One background thread runs a selector loop; all socket work happens there and the
    control methods hand it commands and wait for them to be applied, so when e.g.
    ``cut()`` returns, the faults are in effect.  Buffers are bounded per connection
    (backpressure); connections are capped.

    Modes:

    * ``cut()``: RST every connection and close the listener -> new connects are
      *refused* immediately.
    * ``hang()``: the listener keeps accepting, but nothing is forwarded in either
      direction on new or existing connections; incoming data is swallowed.  Clients see
      timeouts, never errors.
    * ``latency(seconds)``: server->client data is held ``seconds`` (the round trip grows
      by ``seconds``); with ``upstream=True`` client->server data too (adds 2x).
    * ``heal()``: normal forwarding, zero latency.  Connections that were hung are RST
      on heal (their byte streams lost data, so they are unusable); after a cut the
      listener is reopened on the same port.
    * ``reset_connections()``: RST all current connections but keep serving.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        port: int | None = None,
        scheme: str = "redis",
        max_connections: int = 256,
        max_buffer_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.target: Address = (target_host, target_port)
        self.host = LOOPBACK
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.scheme = scheme
        self.max_connections = max_connections
        self.max_buffer_bytes = max_buffer_bytes
        self._mode: ProxyMode = "normal"
        self._latency = 0.0
        self._latency_upstream = False
        self._spare_new = False
        self._links: set[_Link] = set()
        self._sel = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._commands: deque[_Command] = deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._error: BaseException | None = None
        self._released = False
        _register(self)

    # -- public API
    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` pointing at the proxy."""
        return f"{self.scheme}://{self.host}:{self.port}/0"

    @property
    def address(self) -> Address:
        """(host, port) of the proxy."""
        return (self.host, self.port)

    @property
    def mode(self) -> ProxyMode:
        """Current mode: normal, cut or hang."""
        return self._mode

    @property
    def connection_count(self) -> int:
        """Number of currently open client connections."""
        return len(self._links)

    def start(self) -> ChaosProxy:
        """Open the listener and start the forwarding thread (idempotent)."""
        if self._closed:
            raise RuntimeError("proxy is closed")
        if self._thread is not None:
            return self
        for attempt in range(3 if self._auto_port else 1):
            try:
                self._open_listener()
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or not self._auto_port or attempt == 2:
                    raise
                self.port = free_port()
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._thread = threading.Thread(
            target=self._run, name=f"ChaosProxy-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def cut(self) -> None:
        """RST all connections; refuse new ones until heal()."""

        def apply() -> None:
            self._reset_all()
            self._close_listener()
            self._mode = "cut"

        self._call(apply)

    def hang(self) -> None:
        """Accept connections but forward nothing (pending data is dropped)."""

        def apply() -> None:
            if self._listener is None:
                self._open_listener()
            for link in self._links:
                link.hung = True
                link.to_upstream.clear()
                link.to_client.clear()
                link.queued_up = link.queued_down = 0
            self._mode = "hang"

        self._call(apply)

    def latency(self, seconds: float, *, upstream: bool = False, existing: bool = True,
                new: bool = True) -> None:
        """Delay server->client data by ``seconds`` (client->server too if ``upstream``);
        ``existing=False`` spares the connections open now from any latency until ``heal``,
        ``new=False`` the connections accepted from now on."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")

        def apply() -> None:
            self._latency = seconds
            self._latency_upstream = upstream
            self._spare_new = not new
            if not existing:
                for link in self._links:
                    link.spared = True

        self._call(apply)

    def heal(self) -> None:
        """Back to normal forwarding with no latency; hung connections are RST."""

        def apply() -> None:
            for link in [link for link in self._links if link.hung]:
                self._teardown(link, rst=True)
            if self._listener is None:
                self._open_listener()
            self._latency = 0.0
            self._latency_upstream = False
            self._mode = "normal"
            self._spare_new = False
            for link in self._links:
                link.spared = False

        self._call(apply)

    def reset_connections(self) -> None:
        """RST every current connection; keep accepting new ones."""
        self._call(self._reset_all)

    def close(self) -> None:
        """Stop the thread and close every socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._stopping = True
            self._wake()
            thread.join(timeout=10)
        if thread is None or not thread.is_alive():
            self._release_all()
        _unregister(self)

    def __repr__(self) -> str:
        target = f"{self.target[0]}:{self.target[1]}"
        return f"<ChaosProxy {self.host}:{self.port} -> {target} {self._mode}>"

    # -- control plumbing
    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the proxy thread and wait for it."""
        if self._error is not None:
            raise RuntimeError("proxy thread crashed") from self._error
        thread = self._thread
        if thread is None or not thread.is_alive() or self._closed:
            raise RuntimeError("proxy is not running (call start())")
        done = threading.Event()
        errors: list[BaseException] = []
        with self._lock:
            self._commands.append((fn, done, errors))
        self._wake()
        if not done.wait(timeout=10):
            raise RuntimeError("proxy thread did not respond")
        if errors:
            raise errors[0]

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _on_wake(self, _mask: int) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def _run_commands(self) -> None:
        with self._lock:
            commands = list(self._commands)
            self._commands.clear()
        for fn, done, errors in commands:
            try:
                fn()
            except Exception as exc:
                errors.append(exc)
            finally:
                done.set()

    # -- event loop
    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._sel.select(self._select_timeout()):
                    key.data(mask)
                self._run_commands()
                now = time.monotonic()
                for link in list(self._links):
                    self._pump(link, now)
        except BaseException as exc:  # keep the thread from dying with an unhandled error
            self._error = exc
        finally:
            self._release_all()
            with self._lock:
                pending = list(self._commands)
                self._commands.clear()
            for _fn, done, errors in pending:
                errors.append(RuntimeError("proxy stopped"))
                done.set()

    def _select_timeout(self) -> float:
        now = time.monotonic()
        due: list[float] = []
        for link in self._links:
            if link.hung:
                continue
            # A blocked destination wakes us with a write event; don't spin on it.
            if link.to_upstream and not (link.connecting or link.want_write["upstream"]):
                due.append(link.to_upstream[0][0])
            if link.to_client and not link.want_write["client"]:
                due.append(link.to_client[0][0])
        if not due:
            return 1.0
        return max(0.0, min(min(due) - now, 1.0))

    def _open_listener(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._listener = sock
        self._sel.register(sock, selectors.EVENT_READ, self._on_accept)

    def _close_listener(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)
            sock.close()  # pending, not-yet-accepted connections get RST from the kernel

    def _reset_all(self) -> None:
        for link in list(self._links):
            self._teardown(link, rst=True)

    def _release_all(self) -> None:
        if self._released:
            return
        self._released = True
        self._reset_all()
        self._close_listener()
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(self._wake_r)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _on_accept(self, _mask: int) -> None:
        for _ in range(64):
            if self._listener is None:
                return
            try:
                conn, _peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. EMFILE: try again on the next event
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._links) >= self.max_connections:
                _rst_close(conn)
                continue
            link = _Link(client=conn, spared=self._spare_new)
            if self._mode == "hang":
                link.hung = True
            else:
                upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                upstream.setblocking(False)
                code = upstream.connect_ex(self.target)
                if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                    upstream.close()
                    _rst_close(conn)
                    continue
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                link.upstream = upstream
                link.connecting = code != 0
            link.callbacks = {
                "client": partial(self._on_link_event, link, "client"),
                "upstream": partial(self._on_link_event, link, "upstream"),
            }
            self._links.add(link)
            self._update_interest(link)

    def _on_link_event(self, link: _Link, side: _Side, mask: int) -> None:
        if link not in self._links:
            return
        if mask & selectors.EVENT_WRITE:
            if side == "upstream" and link.connecting:
                assert link.upstream is not None
                if link.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._teardown(link, rst=True)  # upstream refused: client sees a reset
                    return
                link.connecting = False
            link.want_write[side] = False
        if mask & selectors.EVENT_READ:
            self._read(link, side)

    def _read(self, link: _Link, side: _Side) -> None:
        sock = link.client if side == "client" else link.upstream
        if sock is None:
            return
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._teardown(link, rst=True)
            return
        if not data:
            if side == "client":
                link.client_eof = True
            else:
                link.upstream_eof = True
            return
        if link.hung:
            return  # swallowed
        now = time.monotonic()
        latency = 0.0 if link.spared else self._latency
        if side == "client":
            delay = latency if self._latency_upstream else 0.0
            link.to_upstream.append((now + delay, data))
            link.queued_up += len(data)
        else:
            link.to_client.append((now + latency, data))
            link.queued_down += len(data)

    def _flush(self, link: _Link, side: _Side, now: float) -> bool:
        """Send due data towards ``side``; False if the link was torn down."""
        sock = link.client if side == "client" else link.upstream
        queue = link.to_client if side == "client" else link.to_upstream
        if sock is None:
            return True
        while queue and queue[0][0] <= now:
            due, data = queue[0]
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                link.want_write[side] = True
                return True
            except OSError:
                self._teardown(link, rst=True)
                return False
            if side == "client":
                link.queued_down -= sent
            else:
                link.queued_up -= sent
            if sent < len(data):
                queue[0] = (due, data[sent:])
                link.want_write[side] = True
                return True
            queue.popleft()
        return True

    def _pump(self, link: _Link, now: float) -> None:
        if link not in self._links:
            return
        if link.hung:
            if link.client_eof:
                self._teardown(link, rst=False)
                return
            if link.upstream is not None and link.upstream_eof:
                self._close_upstream(link)
            self._update_interest(link)
            return
        if not link.connecting and not self._flush(link, "upstream", now):
            return
        if not self._flush(link, "client", now):
            return
        if (link.client_eof and not link.to_upstream) or (link.upstream_eof and not link.to_client):
            self._teardown(link, rst=False)
            return
        self._update_interest(link)

    def _update_interest(self, link: _Link) -> None:
        read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
        client_events = 0
        if not link.client_eof and (link.hung or link.queued_up < self.max_buffer_bytes):
            client_events |= read
        if link.want_write["client"] and not link.hung:
            client_events |= write
        self._set_events(link, "client", link.client, client_events)
        if link.upstream is not None:
            upstream_events = 0
            if link.connecting:
                upstream_events |= write
            else:
                if not link.upstream_eof and (
                    link.hung or link.queued_down < self.max_buffer_bytes
                ):
                    upstream_events |= read
                if link.want_write["upstream"] and not link.hung:
                    upstream_events |= write
            self._set_events(link, "upstream", link.upstream, upstream_events)

    def _set_events(self, link: _Link, side: _Side, sock: socket.socket, events: int) -> None:
        current = link.events[side]
        if events == current:
            return
        if current == 0:
            self._sel.register(sock, events, link.callbacks[side])
        elif events == 0:
            self._sel.unregister(sock)
        else:
            self._sel.modify(sock, events, link.callbacks[side])
        link.events[side] = events

    def _close_upstream(self, link: _Link) -> None:
        if link.upstream is not None:
            if link.events["upstream"]:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(link.upstream)
            link.upstream.close()
            link.upstream = None
            link.events["upstream"] = 0

    def _teardown(self, link: _Link, *, rst: bool) -> None:
        self._links.discard(link)
        if link.events["client"]:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(link.client)
        link.events["client"] = 0
        if rst:
            _rst_close(link.client)
        else:
            link.client.close()
        if link.upstream is not None and rst:
            with contextlib.suppress(OSError):
                link.upstream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        self._close_upstream(link)
        link.to_client.clear()
        link.to_upstream.clear()


_LINGER_RST = struct.pack("ii", 1, 0)


def _rst_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0 so the peer gets a RST (ECONNRESET), not a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    sock.close()
