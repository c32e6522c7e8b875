"""Prefixes, keys, URLs and option validation (pure)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

import pytest

import cache_service
from cache_service import CacheService, ConfigurationError, PickleCodec, core
from cache_service.config import parse_url

from .helpers import import_offline, unique
from .servers import free_port


def test_public_names() -> None:
    assert sorted(cache_service.__all__) == sorted([
        "AsyncCacheService", "CacheError", "CacheService", "Codec", "ConfigurationError",
        "JsonCodec", "LoadTimeout", "Loaded", "NearCache", "NotAnIntegerError", "PickleCodec",
        "SerializationError",
        "ValueTooLargeError",
        "api_cache",
        "cached", "session_cache", "user_cache",
    ])
    for name in cache_service.__all__:
        assert getattr(cache_service, name) is not None


def test_global_instances_have_contract_ttls() -> None:
    from cache_service import api_cache, session_cache, user_cache

    assert (api_cache.default_ttl, user_cache.default_ttl, session_cache.default_ttl) == (
        300, 600, 1800)
    assert (api_cache.prefix, user_cache.prefix, session_cache.prefix) == (
        "api", "user", "session")


def test_import_touches_no_network() -> None:
    out = import_offline("import cache_service\nfrom cache_service import api_cache, cached")
    assert out.stdout.strip() == "ok", out.stderr


def test_global_instances_follow_redis_url() -> None:
    code = "from cache_service import api_cache; print(api_cache.location)"
    env = {"REDIS_URL": "redis://cachehost:6390/3", "PATH": "/usr/bin:/bin",
           "CACHE_SERVICE_DIR": os.environ["CACHE_SERVICE_DIR"]}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False, env=env)
    assert out.stdout.strip() == "redis://cachehost:6390/3", out.stderr


@pytest.mark.parametrize("prefix", ["api", "api:v2", "user_repo", "a.b-c", "A1:b2:c3"])
def test_valid_prefixes(prefix: str) -> None:
    assert CacheService(prefix, url="memory://cfg").prefix == prefix


@pytest.mark.parametrize("prefix", ["", "a b", "api:", ":api", "api::v2", "a*", "a[1]",
                                    "x" * 65, "ключ", None, 5])
def test_invalid_prefixes_say_what_is_allowed(prefix: Any) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        CacheService(prefix, url="memory://cfg")


def test_key_layout() -> None:
    assert CacheService("user", url="memory://cfg").full_key("user:123") == "cs:user::user:123"


def test_location_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://envhost:7000/2")
    assert CacheService(unique(), host="h", port=1).location == "redis://h:1/0"
    assert CacheService(unique(), url="redis://u:9/1").location == "redis://u:9/1"
    assert CacheService(unique()).location == "redis://envhost:7000/2"
    monkeypatch.delenv("REDIS_URL")
    assert CacheService(unique()).location == "redis://localhost:6379/0"


def test_urls_parse() -> None:
    loc = parse_url("rediss://alice:s%40cret@h:6380/4?ssl_ca_certs=/ca.pem")
    assert (loc.kind, loc.hosts, loc.db, loc.username, loc.password, loc.ssl, loc.ssl_ca_certs) \
        == ("standalone", (("h", 6380),), 4, "alice", "s@cret", True, "/ca.pem")
    s = parse_url("redis+sentinel://:pw@a:26379,b:26380/mymaster/2")
    assert (s.kind, s.hosts, s.service_name, s.db, s.password) == (
        "sentinel", (("a", 26379), ("b", 26380)), "mymaster", 2, "pw")
    c = parse_url("redis+cluster://n1:7000,n2:7001")
    assert (c.kind, c.hosts) == ("cluster", (("n1", 7000), ("n2", 7001)))


@pytest.mark.parametrize("url", ["http://x", "localhost:6379", "redis://h:notaport/0",
                                 "redis://h/notadb", "redis+sentinel://h:1"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        CacheService("p", url=url)


def test_passwords_never_in_repr() -> None:
    svc = CacheService(unique(), url="redis://alice:hunter2@h:1/0")
    assert "hunter2" not in repr(svc)
    assert "hunter2" not in repr(svc._location)
    assert "hunter2" not in str(svc.stats())
    assert "hunter2" not in repr(CacheService(unique(), host="h", password="hunter2"))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"default_ttl": 0}, "default_ttl"),
    ({"socket_timeout": -1}, "socket_timeout"),
    ({"max_memory_entries": 0}, "max_memory_entries"),
    ({"max_value_bytes": 1.5}, "max_value_bytes"),
    ({"port": 70000}, "port"),
    ({"url": "redis://h", "host": "h"}, "either url"),
])
def test_bad_options_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        CacheService(unique(), **kwargs)


def test_pickle_codec_requires_a_signing_key() -> None:
    with pytest.raises(ConfigurationError, match="signing_key"):
        PickleCodec(b"")
    with pytest.raises(TypeError):
        PickleCodec()  # type: ignore[call-arg]
    assert "***" in repr(PickleCodec(b"config-signing-key-0123456789"))


# -- a bad REDIS_URL: import works, the ready-made services raise on first use ---------------
_USE_GLOBALS = """
import asyncio, cache_service
from cache_service import CacheService, ConfigurationError, aio
assert CacheService("x", url="memory://").get("k") is None      # explicit url=: unaffected
assert CacheService("x", host="127.0.0.1", port=1).prefix == "x"
print(repr(cache_service.api_cache), repr(aio.user_cache))      # repr never raises
print(cache_service.api_cache.location, cache_service.api_cache.default_ttl)
calls = {
    "get": lambda s: s.get("k"), "set": lambda s: s.set("k", 1),
    "delete": lambda s: s.delete("k"), "invalidate_pattern": lambda s: s.invalidate_pattern("*"),
    "clear_all": lambda s: s.clear_all(), "get_or_set": lambda s: s.get_or_set("k", lambda: 1),
    "stats": lambda s: s.stats(), "is_redis_available": lambda s: s.is_redis_available(),
    "@cached": lambda s: cache_service.cached(cache=s)(lambda: 1)(),
}
def check(outcome):
    print("RAISED" if isinstance(outcome, ConfigurationError) else f"RETURNED {outcome!r}")
    if isinstance(outcome, ConfigurationError):
        print("MESSAGE", outcome)
for name in ("api_cache", "user_cache", "session_cache"):
    for call in calls.values():
        try:
            check(call(getattr(cache_service, name)))
        except ConfigurationError as exc:
            check(exc)
async def main():
    for name in ("api_cache", "user_cache", "session_cache"):
        for call in calls.values():
            try:
                check(await call(getattr(aio, name)))
            except ConfigurationError as exc:
                check(exc)
    await aio.api_cache.aclose()                                  # closing never raises
asyncio.run(main())
cache_service.api_cache.close()
try:
    CacheService("mine")                                           # the user's own call
except ConfigurationError as exc:
    print("CONSTRUCTION", exc)
"""


def _with_redis_url(value: str, code: str) -> subprocess.CompletedProcess[str]:
    env = {"REDIS_URL": value, "PATH": "/usr/bin:/bin",
           "CACHE_SERVICE_DIR": os.environ["CACHE_SERVICE_DIR"]}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, env=env)


@pytest.mark.parametrize("value", [
    "nonsense://x", "localhost:6379", "redis://h:notaport/0", "redis://:secret@h/notadb",
    "redis+sentinel://h:1", "redis+cluster://h:7000/3", "alice:secret@h:6379",
])
def test_bad_redis_url_import_works_and_first_use_raises(value: str) -> None:
    out = _with_redis_url(value, _USE_GLOBALS)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == ("CacheService(prefix='api', location='<invalid REDIS_URL>', "
                        "default_ttl=300) AsyncCacheService(prefix='user', "
                        "location='<invalid REDIS_URL>', default_ttl=600)")
    assert lines[1] == "<invalid REDIS_URL> 300.0"
    outcomes = [line for line in lines if line.startswith(("RAISED", "RETURNED"))]
    assert outcomes == ["RAISED"] * 54  # 9 uses x 3 services x sync/async
    messages = {line for line in lines if line.startswith(("MESSAGE", "CONSTRUCTION"))}
    assert len({m.split(" ", 1)[1] for m in messages}) == 1  # the same error everywhere
    assert len(messages) == 2
    for message in messages:
        assert "REDIS_URL" in message
        assert "secret" not in message
    assert "secret" not in out.stdout + out.stderr


def test_bad_redis_url_message_says_what_is_allowed() -> None:
    out = _with_redis_url("nonsense://x", _USE_GLOBALS)
    message = next(line for line in out.stdout.splitlines() if line.startswith("MESSAGE"))
    assert "REDIS_URL='nonsense://x' is not a valid Redis URL" in message
    for scheme in ("redis://", "rediss://", "redis+sentinel://", "redis+cluster://",
                   "memory://"):
        assert scheme in message
    assert "url= or host=" in message


def test_unix_socket_redis_url_does_not_break_import() -> None:
    """unix:// may or may not be supported: either way, importing and repr() work, and a use
    either raises ConfigurationError naming REDIS_URL or serves (from memory: no socket)."""
    code = (
        "import asyncio, cache_service\n"
        "from cache_service import CacheService, ConfigurationError, aio\n"
        "print(repr(cache_service.api_cache), repr(aio.api_cache))\n"
        "assert CacheService('x', url='memory://').get('k') is None\n"
        "for use in (lambda: cache_service.api_cache.get('k'),\n"
        "            lambda: asyncio.run(aio.api_cache.get('k'))):\n"
        "    try:\n"
        "        print('RETURNED', use())\n"
        "    except ConfigurationError as exc:\n"
        "        assert 'REDIS_URL' in str(exc), exc\n"
        "        print('RAISED')\n"
    )
    out = _with_redis_url("unix:///tmp/cache-service-test-nonexistent.sock", code)
    assert out.returncode == 0, out.stderr
    outcomes = out.stdout.splitlines()[1:]
    assert outcomes in (["RAISED", "RAISED"], ["RETURNED None", "RETURNED None"]), out.stdout


def test_bad_urls_never_show_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("alice:hunter2@h:1", "nonsense://:hunter2@h", "redis://:hunter2@h/x"):
        with pytest.raises(ConfigurationError) as info:
            CacheService("p", url=url)
        assert "hunter2" not in str(info.value)
        monkeypatch.setenv("REDIS_URL", url)
        with pytest.raises(ConfigurationError, match="REDIS_URL") as info:
            CacheService("p")
        assert "hunter2" not in str(info.value)
        monkeypatch.delenv("REDIS_URL")


def _dead(kind: str) -> str:
    """A URL of ``kind`` whose nodes nobody listens on (constructing a service does no I/O)."""
    port = free_port()
    return {"standalone": f"redis://127.0.0.1:{port}/0",
            "sentinel": f"redis+sentinel://127.0.0.1:{port}/mymaster/0",
            "cluster": f"redis+cluster://127.0.0.1:{port}/0"}[kind]


@pytest.mark.parametrize("kind", ["sentinel", "cluster"])
def test_redis_py_is_refused_for_sentinel_and_cluster(kind: str) -> None:
    """redis-py's client serves a standalone Redis only: asked for by name elsewhere it is a
    clear error naming what is allowed."""
    with pytest.raises(ConfigurationError, match=r"connection='redis-py' works with a "
                       r"standalone Redis only .*connection='wire'"):
        CacheService(unique(), url=_dead(kind), connection="redis-py")


def test_our_connection_layer_is_the_default(monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Every location kind gets ``connection="wire"`` unless told; a standalone one may ask
    for redis-py (by name or by $CACHE_SERVICE_CONNECTION); the environment asking for
    redis-py with a Sentinel or Cluster location is warned about once and ignored."""
    monkeypatch.delenv("CACHE_SERVICE_CONNECTION", raising=False)
    monkeypatch.setattr(core, "_warned", set())

    def connection(url: str, **kwargs: Any) -> str:
        svc = CacheService(unique(), url=url, **kwargs)
        try:
            return svc._target.options.connection
        finally:
            svc.close()

    assert [connection(_dead(k)) for k in ("standalone", "sentinel", "cluster")] == ["wire"] * 3
    assert connection(_dead("standalone"), connection="redis-py") == "redis-py"
    monkeypatch.setenv("CACHE_SERVICE_CONNECTION", "redis-py")
    caplog.set_level(logging.WARNING, logger="cache_service")
    assert connection(_dead("standalone")) == "redis-py"
    assert [connection(_dead("sentinel")) for _ in range(2)] == ["wire", "wire"]
    warned = [r.getMessage() for r in caplog.records if r.name == "cache_service"]
    assert len(warned) == 1, warned
    assert "standalone Redis only" in warned[0]


def test_a_later_service_asking_for_other_behaviour_is_warned_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """Services of one location share the first one's options: a later one asking for another
    fallback, state dir or connection is told (once per location and options), tuning is not."""
    caplog.set_level(logging.DEBUG, logger="cache_service")
    url = f"redis://127.0.0.1:{free_port()}/7"  # nothing listens: no server needed
    services = [CacheService(unique(), url=url, fallback="process"),
                CacheService(unique(), url=url, fallback="host"),
                CacheService(unique(), url=url, fallback="host"),
                CacheService(unique(), url=url, fallback="process", socket_timeout=0.3)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "first service" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "fallback" in warnings[0]
    assert "connection" not in warnings[0]
    for svc in services:
        svc.close()


def test_ready_made_services_are_made_once_on_first_use_not_at_import() -> None:
    """Importing makes no target (an app's own service on REDIS_URL keeps its options); the
    first use from many threads at once makes each ready-made service once, sync and async."""
    out = import_offline(
        "import threading, cache_service, cache_service.aio as aio\n"
        "from cache_service._runtime.targets import targets_now\n"
        "assert targets_now() == [], targets_now()\n"
        "seen = []\n"
        "def use():\n"
        "    seen.append((cache_service.user_cache, aio.user_cache))\n"
        "threads = [threading.Thread(target=use) for _ in range(16)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert len({id(s) for s, _ in seen}) == 1 and len({id(a) for _, a in seen}) == 1\n"
        "assert seen[0][0].prefix == 'user' and seen[0][1].prefix == 'user'\n"
        "assert 'api_cache' not in vars(cache_service)\n")
    assert out.stdout.strip() == "ok", out.stderr
