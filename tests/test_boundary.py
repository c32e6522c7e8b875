"""Hostile input at the API boundary: keys, prefixes, tags, patterns and TTLs of every shape.

Every public entry point of CacheService and AsyncCacheService (and ``@cached``'s keys) is
called with arbitrary text (lone surrogates, NUL, very long strings), bytes, ints, None, and
TTLs with nan/inf/-0/huge/bool/timedelta extremes, over three services: one on a real Redis,
one ``memory://``, and one whose Redis is unreachable so the host-shared (SQLite) fallback
serves. Only documented exceptions may come out, all three must agree on what they accept,
their breakers never move, and a key they accept round-trips in each of them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_service import CacheService, ConfigurationError, SerializationError, cached
from cache_service._ops.tags import MAX_TAG_LENGTH
from cache_service.aio import AsyncCacheService
from cache_service.config import MAX_TTL
from cache_service.keys import MAX_KEY_LENGTH

from .helpers import unique
from .servers import RedisServer, free_port

DOCUMENTED = (ConfigurationError, SerializationError)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# Text with every code point, lone surrogates and NUL included.
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=12),
    st.sampled_from(["", "\x00", "a\x00b", "bad\ud800", "\udfff", "caf\u00e9", "\U0001f600",
                     "*", "[", "\\", "a" * MAX_KEY_LENGTH, "a" * (MAX_KEY_LENGTH + 1),
                     "\u00e9" * MAX_KEY_LENGTH, "x" * MAX_TAG_LENGTH,
                     "x" * (MAX_TAG_LENGTH + 1)]),
    st.integers(1, 3).map(lambda n: "k\ud800" * n),
)
NOT_TEXT = st.one_of(st.binary(max_size=8), st.integers(), st.none(), st.floats(),
                     st.just(("k",)))
KEYS = st.one_of(TEXT, TEXT, TEXT, NOT_TEXT)
TTLS = st.one_of(
    st.none(),
    st.floats(),  # nan, inf, -0.0, subnormals and huge ones included
    st.integers(min_value=-(2**70), max_value=2**1100),
    st.booleans(),
    st.timedeltas(),
    st.sampled_from([timedelta.max, timedelta.min, timedelta(0), timedelta(microseconds=1),
                     -0.0, 0, 1e17, 1e12, MAX_TTL, MAX_TTL + 1, 5e-324, math.inf, "10"]),
)


def sound_text(value: object, limit: int = MAX_KEY_LENGTH) -> bool:
    """The documented rule for keys, patterns and tags."""
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def sound_ttl(ttl: object) -> bool:
    """The documented rule for TTLs (``None``: the default)."""
    if ttl is None:
        return True
    if isinstance(ttl, timedelta):
        return 0 < ttl.total_seconds() <= MAX_TTL
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        return False
    return 0 < ttl <= MAX_TTL


class Mode:
    """One service (sync and async twins) and how its breaker must look throughout."""

    def __init__(self, name: str, url: str, loop: asyncio.AbstractEventLoop,
                 **options: Any) -> None:
        self.name = name
        prefix = unique(name)
        self.svc = CacheService(prefix, url=url, **options)
        self.asvc = AsyncCacheService(prefix, url=url, **options)
        self.loop = loop
        self.svc.set("warm", 1)  # the unreachable one opens its breaker here, once
        self.before = self.breaker()

    def breaker(self) -> tuple[Any, ...]:
        target = self.svc.stats()["target"]
        return target["backend"], target["breaker_opened"], target["breaker_closed"]

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def modes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Mode]]:
    loop = asyncio.new_event_loop()
    state = tmp_path_factory.mktemp("boundary-state")
    with RedisServer(name="boundary") as server:
        found = [
            Mode("redis", server.url, loop, socket_timeout=2.0, connect_timeout=2.0),
            Mode("memory", f"memory://{unique()}", loop),
            Mode("down", f"redis://127.0.0.1:{free_port()}/0", loop, state_dir=state,
                 fallback="host", breaker_min_backoff=30.0, breaker_max_backoff=60.0),
        ]
        assert [m.breaker()[0] for m in found] == ["redis", "memory", "memory"]
        yield found
        for m in found:
            m.svc.close()
            m.run(m.asvc.aclose())
    loop.close()
    _clean(state)


def _clean(state: Path) -> None:
    for path in sorted(state.rglob("*"), reverse=True):
        path.unlink() if not path.is_dir() else path.rmdir()


def outcome(call: Callable[[], Any]) -> str:
    """``"ok"`` or the documented exception's class name; anything else fails the test."""
    try:
        call()
    except DOCUMENTED as exc:
        return type(exc).__name__
    return "ok"


def calls(m: Mode, key: Any, ttl: Any, tag: Any, pattern: Any) -> dict[str, Callable[[], Any]]:
    """Every entry point taking a key, TTL, tag or pattern, sync and async."""
    svc, asvc, run = m.svc, m.asvc, m.run
    return {
        "get": lambda: svc.get(key),
        "set": lambda: svc.set(key, 1, ttl),
        "set+tags": lambda: svc.set(key, 1, ttl, tags=[tag]),
        "add": lambda: svc.add(key, 1, ttl),
        "delete": lambda: svc.delete("other", key),
        "get_many": lambda: svc.get_many(["other", key]),
        "set_many": lambda: svc.set_many({"other": 1, key: 2}, ttl),
        "incr": lambda: svc.incr(key, 1, ttl),
        "decr": lambda: svc.decr(key, 1, ttl),
        "touch": lambda: svc.touch(key, ttl),
        "ttl": lambda: svc.ttl(key),
        "exists": lambda: svc.exists(key),
        "invalidate_pattern": lambda: svc.invalidate_pattern(pattern),
        "keys_pattern": lambda: svc.keys(pattern),
        "invalidate_tags": lambda: svc.invalidate_tags(tag),
        "get_or_set": lambda: svc.get_or_set(key, lambda: 1, ttl, tags=[tag]),
        "aget": lambda: run(asvc.get(key)),
        "aset": lambda: run(asvc.set(key, 1, ttl)),
        "aget_many": lambda: run(asvc.get_many([key])),
        "adelete": lambda: run(asvc.delete(key)),
        "aget_or_set": lambda: run(asvc.get_or_set(key, lambda: 1, ttl)),
        "ainvalidate_pattern": lambda: run(asvc.invalidate_pattern(pattern)),
        "ainvalidate_tags": lambda: run(asvc.invalidate_tags(tag)),
    }


def expected(name: str, key: Any, ttl: Any, tag: Any, pattern: Any) -> bool:
    """Whether the documented rules accept this call."""
    if "pattern" in name:
        return sound_text(pattern)
    if "invalidate_tags" in name:
        return sound_text(tag, MAX_TAG_LENGTH)
    ok = sound_text(key)
    if name in ("set", "set+tags", "add", "set_many", "incr", "decr", "touch", "get_or_set",
                "aset", "aget_or_set"):
        ok = ok and sound_ttl(ttl)
    if name in ("set+tags", "get_or_set"):
        ok = ok and sound_text(tag, MAX_TAG_LENGTH)
    return ok


@SETTINGS
@given(key=KEYS, ttl=TTLS, tag=KEYS, pattern=KEYS)
def test_every_entry_point_refuses_bad_input_alike_and_the_breaker_never_moves(
        modes: list[Mode], key: Any, ttl: Any, tag: Any, pattern: Any) -> None:
    results: dict[str, list[str]] = {}
    for m in modes:
        for name, call in calls(m, key, ttl, tag, pattern).items():
            results.setdefault(name, []).append(outcome(call))
    for name, seen in results.items():
        assert len(set(seen)) == 1, (name, dict(zip([m.name for m in modes], seen, strict=True)))
        assert (seen[0] == "ok") == expected(name, key, ttl, tag, pattern), (name, seen[0])
    for m in modes:
        assert m.breaker() == m.before, m.name


@SETTINGS
@given(key=st.text(ANY_CHAR, min_size=1, max_size=30))
def test_every_accepted_key_round_trips_in_every_mode(modes: list[Mode], key: str) -> None:
    """NUL and any other encodable character work on Redis and on both fallback stores."""
    if not sound_text(key):
        for m in modes:
            with pytest.raises(ConfigurationError, match="UTF-8"):
                m.svc.set(key, 1)
        return
    for m in modes:
        m.svc.set(key, [key])
        assert m.svc.get(key) == [key], m.name
        assert m.svc.get_many([key]) == {key: [key]}, m.name
        assert m.svc.delete(key) == 1, m.name
        assert m.breaker() == m.before, m.name


@SETTINGS
@given(prefix=KEYS)
def test_prefixes_are_refused_with_a_configuration_error_or_accepted(prefix: Any) -> None:
    try:
        svc = CacheService(prefix, url="memory://boundary-prefix")
    except ConfigurationError as exc:
        message = str(exc)
    else:
        svc.set("k", 1)
        assert svc.get("k") == 1
        return
    assert "prefix" in message


@SETTINGS
@given(ttl=TTLS)
def test_ttls_of_every_kind_for_options_and_the_default(ttl: Any) -> None:
    """default_ttl, stale_while_revalidate, stale_if_error and lock_ttl follow the TTL rule."""
    for build in (lambda: CacheService("boundary-ttl", url="memory://b", default_ttl=ttl),
                  lambda: cached(ttl=ttl, cache=CacheService("boundary-ttl", url="memory://b"))):
        try:
            build()
        except ConfigurationError:
            assert not sound_ttl(ttl) or ttl is None
        else:
            assert sound_ttl(ttl)
    svc = CacheService("boundary-ttl", url="memory://b")
    for option in ("stale_while_revalidate", "stale_if_error", "lock_ttl"):
        ok = (isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and \
            (ttl > 0 if option == "lock_ttl" else ttl >= 0) and ttl <= MAX_TTL) or \
            (ttl is None and option == "stale_if_error")  # its default: stale_while_revalidate
        if ok:
            assert svc.get_or_set("k", lambda: 1, **{option: ttl}) == 1
        else:
            with pytest.raises(ConfigurationError):
                svc.get_or_set("k", lambda: 1, **{option: ttl})


def test_cached_refuses_keys_it_cannot_store(modes: list[Mode]) -> None:
    """Arguments with a lone surrogate, and a key function's bad keys, raise documented
    errors before any I/O, in every mode."""
    for m in modes:
        @cached(cache=m.svc)
        def by_args(x: str) -> str:
            return x

        @cached(cache=m.svc, key_func=lambda x: x)
        def by_func(x: str) -> str:
            return x

        assert by_args("caf\u00e9\x00") == "caf\u00e9\x00"
        with pytest.raises(SerializationError):
            by_args("bad\ud800")
        with pytest.raises(ConfigurationError):
            by_func("bad\ud800")
        with pytest.raises(ConfigurationError):
            by_func("k" * (MAX_KEY_LENGTH + 1))
        assert m.breaker() == m.before, m.name
