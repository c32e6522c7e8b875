"""A TCP proxy between a client and a server that can cut, hang, reset or slow connections."""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from .common import LOOPBACK, Address, _Managed, _register, _unregister
from .ports import free_port

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
