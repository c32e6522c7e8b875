"""Only connectivity opens the breaker: error replies from real servers are handled per request.

Each scenario starts a ``redis-server`` configured to refuse us in one way (maxmemory with
noeviction, an ACL user missing commands, a busy Lua script, a replica, an out-of-range TTL, a
foreign type) and sweeps every operation over the sync and the async service: no exception
reaches the caller, each returns what its documentation promises for a refused request, a
refused write never leaves the value it replaces readable, and the breaker stays closed
(the one exception, journaled like an outage: a state that refuses even the UNLINK, BUSY).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    DataError,
    ExecAbortError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from cache_service import AsyncCacheService, CacheService
from cache_service._redis.backend import OUTAGES, classify_error, reply_code, reply_text
from cache_service.errors import NotAnIntegerError

from .helpers import eventually, unique
from .servers import FLAVOURS, RedisServer, flavour_available, free_port

FAST = {"socket_timeout": 1.0, "connect_timeout": 1.0,
        "breaker_min_backoff": 0.05, "breaker_max_backoff": 0.2}
MODES = ["sync", "async"]


class Api:
    """One service, sync or async, called the same way: ``api("get", "k")``."""

    def __init__(self, mode: str, url: str, **kwargs: Any) -> None:
        kind = CacheService if mode == "sync" else AsyncCacheService
        self.svc: Any = kind(unique("err"), url=url, **{**FAST, **kwargs})
        self.runner = asyncio.Runner() if mode == "async" else None

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.svc, name)(*args, **kwargs)
        return self.runner.run(result) if self.runner is not None else result

    def target(self) -> dict[str, Any]:
        return dict(self("stats")["target"])

    def close(self) -> None:
        if self.runner is not None:
            self.runner.run(self.svc.aclose())
            self.runner.close()
        else:
            self.svc.close() if hasattr(self.svc, "close") else None


@contextlib.contextmanager
def api(mode: str, url: str, **kwargs: Any) -> Iterator[Api]:
    made = Api(mode, url, **kwargs)
    try:
        yield made
    finally:
        made.close()


# The sweep: every operation, with what its documentation promises whether or not Redis
# refuses it (get_or_set returns the loader's value whatever happens to its write).
def _load() -> str:
    return "loaded"


OPERATIONS: list[tuple[str, tuple[Any, ...], dict[str, Any], Callable[[Any], bool]]] = [
    ("get", ("k",), {}, lambda r: True),
    ("set", ("k", {"v": 2}), {}, lambda r: r is None),
    ("add", ("fresh", 1), {}, lambda r: type(r) is bool),
    ("incr", ("n",), {}, lambda r: type(r) is int),
    ("delete", ("k", "other"), {}, lambda r: type(r) is int),
    ("get_many", (["k", "other", "n"],), {}, lambda r: type(r) is dict),
    ("set_many", ({"k": 3, "other": 4},), {}, lambda r: r is None),
    ("invalidate_pattern", ("*",), {}, lambda r: type(r) is int),
    ("get_or_set", ("gos", _load), {}, lambda r: r == "loaded"),
    ("exists", ("k",), {}, lambda r: type(r) is bool),
    ("ttl", ("k",), {}, lambda r: r is None or type(r) is float),
    ("touch", ("k",), {}, lambda r: type(r) is bool),
    ("set", ("tagged", 1), {"tags": ["t"]}, lambda r: r is None),
    ("invalidate_tags", ("t",), {}, lambda r: r is None),
    ("is_redis_available", (), {}, lambda r: r is True),
]
IDS = [f"{name}{'-tagged' if kw else ''}" for name, _, kw, _ in OPERATIONS]


def _sweep(a: Api) -> None:
    """Every operation: no exception, its documented result."""
    for name, args, kwargs, ok in OPERATIONS:
        result = a(name, *args, **kwargs)
        assert ok(result), (name, result)


def _closed(a: Api, opened: int) -> None:
    target = a.target()
    assert target["breaker_state"] == "closed", target
    assert target["breaker_opened"] == opened, target
    assert target["journal_size"] == 0, target


# -- maxmemory + noeviction: OOM ---------------------------------------------------------------

@pytest.fixture(scope="module")
def oom_server() -> Iterator[RedisServer]:
    with RedisServer(name="oom", extra_args=["--maxmemory-policy", "noeviction"]) as server:
        yield server


@contextlib.contextmanager
def out_of_memory(server: RedisServer) -> Iterator[None]:
    with server.client() as admin:
        admin.config_set("maxmemory", 1)  # every write that may grow memory: OOM
        try:
            yield
        finally:
            admin.config_set("maxmemory", 0)


@pytest.mark.parametrize("mode", MODES)
def test_oom_set_over_an_existing_key_never_serves_the_old_value(
        oom_server: RedisServer, mode: str) -> None:
    with api(mode, oom_server.url) as a:
        a("set", "k", "old")
        a("set", "kept", "still here")
        a("set_many", {"m1": "old", "m2": "old"})
        a("incr", "n", 5)
        opened = a.target()["breaker_opened"]
        with out_of_memory(oom_server):
            assert a("set", "k", "new") is None
            assert a("get", "k") is None  # the old value went with the refused write
            assert a("set_many", {"m1": "new", "m2": "new"}) is None
            assert a("get_many", ["m1", "m2"]) == {}
            assert a("incr", "n", 2) == 2  # counted from zero: the counter was dropped
            assert a("get", "n") is None
            assert a("get", "kept") == "still here"  # reads work
            assert a("add", "fresh", 1) is False
            target = a.target()
            assert target["reply_errors"] >= 4
            assert target["last_reply_error"].startswith("OOM"), target
            assert "k" not in target["last_reply_error"].split()
        _closed(a, opened)
        with oom_server.client() as raw:
            assert raw.exists(a.svc.full_key("k"), a.svc.full_key("m1"),
                              a.svc.full_key("n")) == 0
        a("set", "k", "after")
        assert a("get", "k") == "after"


@pytest.mark.parametrize("mode", MODES)
def test_oom_sweep(oom_server: RedisServer, mode: str) -> None:
    with api(mode, oom_server.url) as a:
        a("set", "k", 1)
        opened = a.target()["breaker_opened"]
        with out_of_memory(oom_server):
            _sweep(a)
            assert a("get", "k") is None
        _closed(a, opened)


# -- an ACL user missing commands: NOPERM ----------------------------------------------------

DENIALS = {"set": ["-set"], "scripts": ["-@scripting"], "unlink": ["-unlink", "-del"],
           "reads": ["-get", "-mget"], "scan": ["-scan"]}


@pytest.fixture(scope="module", params=FLAVOURS)
def acl_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """Users denied one thing each, on Redis and on Valkey (which words a denial met inside a
    script differently: see ``_SCRIPT_DENIED``)."""
    if not flavour_available(request.param):
        pytest.skip(f"no {request.param}-server executable")
    with RedisServer(name="acl", flavour=request.param) as server:
        with server.client() as admin:
            for mode in MODES:
                for name, rules in DENIALS.items():
                    admin.acl_setuser(f"{mode}-{name}", enabled=True, passwords=["+pw"],
                                      keys=["*"], channels=["*"], commands=["+@all", *rules])
        yield server


@pytest.mark.parametrize("denied", list(DENIALS))
@pytest.mark.parametrize("mode", MODES)
def test_noperm_is_named_once_and_never_moves_the_breaker(
        acl_server: RedisServer, mode: str, denied: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cache_service")
    user = f"{mode}-{denied}"
    url = f"redis://{user}:pw@{acl_server.host}:{acl_server.port}/0"
    with api(mode, url) as a:
        with acl_server.client() as admin:
            admin.set(a.svc.full_key("k"), b"\xc5\x01\x01" + b"\0" * 8 + b"1")
        for _ in range(3):
            _sweep(a)
        target = a.target()
        _closed(a, 0)
        assert target["reply_errors"] > 0
        assert target["last_reply_error"].startswith("NOPERM"), target
        assert "NOPERM" in target["misconfiguration"]
        assert repr(user) in target["misconfiguration"]
        named = Counter(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
        assert named, "NOPERM named in the log"
        assert all(n == 1 for n in named.values()), named
        assert all("NOPERM" in m for m in named), named
        assert not [m for m in named if ":pw@" in m], named
        assert not [r for r in caplog.records if "unreachable" in r.getMessage()]


# -- a busy Lua script: BUSY -----------------------------------------------------------------

@contextlib.contextmanager
def busy_script(server: RedisServer) -> Iterator[None]:
    """A script loops until killed; past ``busy-reply-threshold`` every other request gets
    BUSY."""
    def loop() -> None:
        with server.client(socket_timeout=60) as raw, contextlib.suppress(ResponseError):
            raw.eval("while true do end", 0)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    with server.client() as probe:
        eventually(lambda: _busy(probe), timeout=5)
    try:
        yield
    finally:
        with server.client() as admin:
            eventually(lambda: admin.script_kill() or True, timeout=5)
        thread.join(10)


def _busy(client: redis.Redis) -> bool:
    try:
        client.ping()
    except ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False


@pytest.fixture(scope="module")
def busy_server() -> Iterator[RedisServer]:
    with RedisServer(name="busy", extra_args=["--busy-reply-threshold", "20"]) as server:
        yield server


@pytest.mark.parametrize("mode", MODES)
def test_busy_reads_miss_with_the_breaker_closed(busy_server: RedisServer, mode: str) -> None:
    with api(mode, busy_server.url) as a:
        a("set", "k", "v")
        opened = a.target()["breaker_opened"]
        with busy_script(busy_server):
            assert a("get", "k") is None
            assert a("get_many", ["k", "x"]) == {}
            assert a("exists", "k") is False
            assert a("ttl", "k") is None
            assert a("add", "fresh", 1) is False
            assert a("touch", "k") is False
            assert a("is_redis_available") is True
            assert a.target()["last_reply_error"].startswith("BUSY")
            _closed(a, opened)
        assert a("get", "k") == "v"


@pytest.mark.parametrize(("name", "args"), [
    ("set", ("k", "new")), ("set_many", ({"k": "new"},)), ("incr", ("k",)),
    ("delete", ("k",)), ("invalidate_pattern", ("k*",)), ("get_or_set", ("k", _load))])
@pytest.mark.parametrize("mode", MODES)
def test_busy_writes_never_leave_the_old_value(busy_server: RedisServer, mode: str,
                                               name: str, args: tuple[Any, ...]) -> None:
    """A write BUSY refuses cannot drop the value it replaces either: it is journaled as
    in an outage, and once the script ends the old value is gone."""
    with api(mode, busy_server.url) as a:
        a("set", "k", "old")
        with busy_script(busy_server):
            a(name, *args)
            assert a("get", "k") != "old"
        eventually(lambda: a.target()["breaker_state"] == "closed", timeout=10)
        assert a("get", "k") is None
        assert a.target()["journal_size"] == 0


# -- a replica: READONLY -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def replica() -> Iterator[RedisServer]:
    with RedisServer(name="primary") as primary, RedisServer(
            name="replica", extra_args=["--replicaof", primary.host, str(primary.port)]) as rep:
        with primary.client() as raw:
            raw.set("seed", "1")
        with rep.client() as raw:
            eventually(lambda: raw.get("seed") == b"1", timeout=10)
        yield rep


@pytest.mark.parametrize("mode", MODES)
def test_a_replica_refuses_writes_without_an_outage(
        replica: RedisServer, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cache_service")
    with api(mode, replica.url[:-1] + str(MODES.index(mode))) as a:  # a target per mode
        for _ in range(3):
            for name, args, kwargs, ok in OPERATIONS:
                if name == "get_or_set":
                    assert a(name, *args) == "loaded"
                else:
                    assert ok(a(name, *args, **kwargs)) or name in ("delete", "incr"), name
        _closed(a, 0)
        target = a.target()
        assert "READONLY" in target["misconfiguration"]
        assert "primary" in target["misconfiguration"]
        named = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(named) == 1, named


# -- what validation lets through reaches Redis: out of range, WRONGTYPE ---------------------

@pytest.mark.parametrize("mode", MODES)
def test_out_of_range_ttl_is_a_refused_write(redis_server: RedisServer, mode: str) -> None:
    """A TTL Redis refuses ("value is not an integer or out of range") fails that write only,
    and drops the value it would have replaced; a ConfigurationError is as good (validation)."""
    with api(mode, redis_server.url) as a:
        a("set", "k", "old")
        opened = a.target()["breaker_opened"]
        for ttl in (1e17, 2**62, 9.3e15):
            try:
                assert a("set", "k", "new", ttl=ttl) is None
            except ValueError:  # refused at the boundary: nothing was written
                assert a("get", "k") == "old"
            else:
                assert a("get", "k") in (None, "new")
            with contextlib.suppress(ValueError):
                assert a("set_many", {"k": 1}, ttl=ttl) is None
        _closed(a, opened)


@pytest.mark.parametrize("mode", MODES)
def test_wrongtype_is_a_miss_and_never_touched(redis_server: RedisServer, mode: str) -> None:
    with api(mode, redis_server.url) as a:
        opened = a.target()["breaker_opened"]
        with redis_server.client() as raw:
            for key in ("k", "n", "fresh", "gos", "other"):
                raw.delete(a.svc.full_key(key))
                raw.hset(a.svc.full_key(key), "f", "v")
        for name, args, kwargs, ok in OPERATIONS:
            if name == "incr":
                with pytest.raises(NotAnIntegerError):  # documented: a hash is no counter
                    a(name, *args, **kwargs)
            else:
                assert ok(a(name, *args, **kwargs)), name
        with redis_server.client() as raw:
            assert raw.hget(a.svc.full_key("n"), "f") == b"v"  # never touched
        _closed(a, opened)


# -- the classifier over real exception instances -----------------------------------------------

def _pipeline_error() -> ResponseError:
    exc = OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    exc.args = ("Command # 1 (SET cs:{secret}::session:abc x PX 100) of pipeline caused "
                f"error: {exc.args[0]}",)
    return exc


EXAMPLES: list[tuple[BaseException, str, str]] = [
    (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "reply", "OOM"),
    (_pipeline_error(), "reply", "OOM"),
    (NoPermissionError("this user has no permissions to run the 'set' command"), "denied",
     "NOPERM"),
    (ResponseError("The user executing the script can't run this command or subcommand "
                   "script: 0123456789abcdef0123456789abcdef01234567, on @user_script:8."),
     "denied", "NOPERM"),  # Redis 7
    (ResponseError("ACL failure in script: User u has no permissions to run the 'set' command "
                   "script: 0123456789abcdef0123456789abcdef01234567, on @user_script:8."),
     "denied", "NOPERM"),  # Valkey 8
    (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
     "wrongtype", "WRONGTYPE"),
    (ResponseError("value is not an integer or out of range"), "reply", "ERR"),
    (ResponseError("invalid expire time in 'set' command"), "reply", "ERR"),
    (ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or "
                   "SHUTDOWN NOSAVE."), "reply", "BUSY"),
    (BusyLoadingError("Redis is loading the dataset in memory"), "reply", "LOADING"),
    (NoScriptError("No matching script. Please use EVAL."), "reply", "NOSCRIPT"),
    (ExecAbortError("Transaction discarded because of previous errors."), "reply", "EXECABORT"),
    (ResponseError("NOREPLICAS Not enough good replicas to write."), "reply", "NOREPLICAS"),
    (ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently "
                   "unable to persist to disk."), "reply", "MISCONF"),
    (ReadOnlyError("You can't write against a read only replica."), "denied", "READONLY"),
    (TryAgainError("Multiple keys request during rehashing of slot"), "reply", "TRYAGAIN"),
    (ClusterDownError("The cluster is down"), "outage", ""),
    (MovedError("3999 127.0.0.1:6381"), "outage", ""),
    (ResponseError("MASTERDOWN Link with MASTER is down"), "outage", "MASTERDOWN"),
    (DataError("Invalid input of type: 'dict'. Convert to a bytes, string, int or float first."),
     "input", ""),
    (UnicodeEncodeError("utf-8", "k\ud800", 1, 2, "surrogates not allowed"), "input", ""),
    (redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
     "outage", ""),
    (redis.TimeoutError("Timeout reading from socket"), "outage", ""),
    (TimeoutError(), "outage", ""),
    (ConnectionResetError(104, "Connection reset by peer"), "broken", ""),
    (redis.ConnectionError("Connection closed by server."), "broken", ""),
    (RuntimeError("unable to perform operation on <TCPTransport closed=True reading=False>; "
                  "the handler is closed"), "broken", ""),
    (AttributeError("'NoneType' object has no attribute 'writelines'"), "outage", ""),
    (AuthenticationError("invalid username-password pair or user is disabled."),
     "misconfigured", ""),
    (ResponseError("NOAUTH Authentication required."), "misconfigured", ""),
]


@pytest.mark.parametrize(("exc", "kind", "code"), EXAMPLES,
                         ids=[f"{type(e).__name__}-{k}-{i}" for i, (e, k, _) in
                              enumerate(EXAMPLES)])
def test_classify_error(exc: BaseException, kind: str, code: str) -> None:
    assert classify_error(exc) == kind
    if code:
        assert reply_code(exc) == code
        assert "secret" not in reply_text(exc)  # a pipeline's error quotes its command
    sentinel = classify_error(exc, "sentinel")
    if code in ("READONLY", "NOREPLICAS"):
        assert sentinel == "outage"  # a failover moved the primary: ask the sentinels again
    else:
        assert sentinel == kind


def test_classify_real_replies(redis_server: RedisServer) -> None:
    """Replies from a real server, as redis-py raises them, sync and async."""
    with redis_server.client() as raw:
        key = unique("classify")
        raw.hset(key, "f", "v")
        failures: list[tuple[Callable[[], Any], str]] = [
            (lambda: raw.get(key), "wrongtype"),
            (lambda: raw.set(unique(), "v", px=10**20), "reply"),
            (lambda: raw.evalsha("0" * 40, 0), "reply"),
            (lambda: raw.execute_command("NOSUCHCOMMAND"), "reply"),
            (lambda: raw.set(unique(), {"a": 1}), "input"),  # type: ignore[arg-type]
            (lambda: raw.set("k\ud800", "v"), "input"),
        ]
        pipe = raw.pipeline(transaction=False)
        pipe.set(unique("pipe"), "v", px=10**20)
        failures.append((pipe.execute, "reply"))
        for call, kind in failures:
            with pytest.raises((redis.RedisError, UnicodeError)) as info:
                call()
            assert classify_error(info.value) == kind, info.value
            assert classify_error(info.value) not in OUTAGES
        refused = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
        with pytest.raises(redis.ConnectionError) as info:
            refused.ping()
        assert classify_error(info.value) == "outage"
