"""The glob matcher against a real Redis: same answers as ``SCAN MATCH`` on every generated
pattern and key (bytes, classes, ranges, escapes, unterminated classes, multibyte text), in
polynomial time, and used as such by the fallback stores, the journal and the near cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_service import CacheService
from cache_service._host.memory_store import MemoryStore
from cache_service._near.store import NearCache, NearStore
from cache_service.redis_glob import compile_glob, escape_glob, redis_match

from .helpers import eventually, unique
from .servers import RedisServer

# What a pattern is made of: every special character, letters around the ranges' ends,
# multibyte characters (whose UTF-8 bytes sort above ASCII, and below it as C's signed char).
PATTERN_ALPHABET = list("*?[]^-\\") + list("abz") + ["é", "ß", "日", "\x7f", "\x00", "~"]
KEY_ALPHABET = list("*?[]^-\\") + list("abzA") + ["é", "ß", "日", "\x7f", "\x00", "~", "\x80"]
patterns = st.text(alphabet=st.sampled_from(PATTERN_ALPHABET), max_size=10)
keys = st.lists(st.text(alphabet=st.sampled_from(KEY_ALPHABET), max_size=7),
                min_size=1, max_size=25, unique=True)


@pytest.fixture(scope="module")
def raw() -> Iterator[redis.Redis]:
    """A private server's client: the tests flush its database for every example."""
    with RedisServer(name="glob") as server:
        client = server.client()
        yield client
        client.close()


def redis_says(raw: redis.Redis, pattern: str, names: list[str]) -> set[str]:
    """The names ``SCAN MATCH pattern`` returns once exactly ``names`` exist."""
    with raw.pipeline(transaction=False) as pipe:
        pipe.flushdb()
        pipe.mset(dict.fromkeys(names, 1))
        pipe.execute()
    return {k.decode("utf-8") for k in raw.scan_iter(match=pattern, count=1000)}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=patterns, names=keys)
def test_every_generated_pattern_matches_what_redis_matches(raw: redis.Redis, pattern: str,
                                                            names: list[str]) -> None:
    glob = compile_glob(pattern)
    expected = redis_says(raw, pattern, names)
    assert {k for k in names if glob.matches(k)} == expected
    assert set(glob.select(names)) == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=patterns, data=st.data())
def test_keys_built_to_nearly_match_agree_too(raw: redis.Redis, pattern: str,
                                              data: st.DataObject) -> None:
    """Random keys rarely match: here keys are the pattern's own characters, mutated."""
    base = pattern.replace("\\", "")
    names = data.draw(st.lists(st.builds(
        lambda cut, extra: base[:cut] + extra + base[cut:],
        st.integers(0, len(base)), st.text(alphabet=st.sampled_from(KEY_ALPHABET), max_size=2)),
        min_size=1, max_size=15, unique=True))
    glob = compile_glob(pattern)
    assert {k for k in names if glob.matches(k)} == redis_says(raw, pattern, names)


@pytest.mark.parametrize(("pattern", "key"), [
    ("caf?", "café"), ("caf??", "café"), ("caf[é]", "café"), ("caf[^a]?", "café"),
    ("*", ""), ("", ""), ("**", ""), ("?", ""), ("a*", "a"), ("*a", "a"),
    ("[", "["), ("[^", "x"), ("[abc", "b"), ("[a-", "-"), ("[a\\", "\\"), ("\\", "\\"),
    ("a\\", "a\\"), ("[]a]", "a"), ("[]a]", "]a]"), ("[^]a]", "xa]"),
    ("[a-]x]", "`"), ("[a-]x]", "x"), ("[z-a]", "m"), ("[\\]]", "]"), ("[\\", "\\"),
    ("[a-\xe9]", "\x01"), ("[\x80-a]", "b"), ("[é-a]", "\x01"), ("\\*x", "*x"),
    ("a*" * 1000 + "b", "a" * 1000 + "b"), ("a*" * 1001 + "b", "a" * 1001 + "b"),
    ("a*" * 1001, "a" * 1001 + "b"), ("a*" * 1002, "a" * 1002 + "b"),
])
def test_edge_cases_of_stringmatchlen(raw: redis.Redis, pattern: str, key: str) -> None:
    assert compile_glob(pattern).matches(key) == bool(redis_says(raw, pattern, [key]))


@pytest.mark.parametrize(("pattern", "key"), [
    ("*a" * 20 + "*b", "a" * 10_000),
    ("*a" * 5 + "*b", "a" * 200),
    ("*?" * 20 + "*b", "é" * 5_000),
    ("*[a-z]a" * 20 + "*b", "aa" * 5_000),
    ("*[ab]" * 999 + "c", "a" * 4_096),
    ("a*" * 999 + "b", "a" * 4_096),
])
def test_worst_cases_take_polynomial_time(pattern: str, key: str) -> None:
    started = time.perf_counter()
    assert compile_glob(pattern).matches(key) is False
    assert time.perf_counter() - started < 1.0  # a backtracking matcher takes minutes-years


@given(st.text(alphabet=st.sampled_from(KEY_ALPHABET), max_size=12))
def test_an_escaped_text_matches_only_itself(text: str) -> None:
    glob = compile_glob(escape_glob(text))
    assert glob.matches(text) or text == ""
    assert not glob.matches(text + "x")
    assert redis_match(escape_glob(text), text) == glob.matches(text)


def test_stores_and_near_cache_delete_what_redis_would() -> None:
    names = ["cafe", "café", "cafX", "caf", "cafés"]
    glob = compile_glob("caf?")
    memory = MemoryStore(100, 10**6)
    for name in names:
        memory.set(name, b"v", 60)
    assert memory.delete_matching(glob) == 2
    assert sorted(k for k in names if memory.get(k)) == ["caf", "café", "cafés"]
    near = NearStore(NearCache())
    near.entries.update({k: [0.0, None, None, 1, False, 0, 0, 0] for k in names})
    near.invalidate_matching(glob)
    assert sorted(near.entries) == ["caf", "café", "cafés"]


@pytest.mark.parametrize("fallback", ["host", "process"])
def test_a_pattern_invalidated_in_an_outage_removes_the_same_keys_everywhere(
        tmp_path: Path, fallback: str) -> None:
    """``caf?`` is one byte after ``caf``: the fallback keeps ``café`` as Redis does, and the
    journaled pattern, replayed by SCAN, removes on Redis what it removed in the fallback."""
    with RedisServer(name="glob-outage") as server:
        svc = CacheService(unique("glob"), url=server.url, state_dir=tmp_path,
                           fallback=fallback, breaker_min_backoff=0.05, breaker_max_backoff=0.2)
        for name in ("r:cafe", "r:café", "r:cafX"):
            svc.set(name, "redis")
        server.save()
        server.kill()
        for name in ("f:cafe", "f:café", "f:cafX"):
            svc.set(name, "fallback")
        assert svc.get("f:cafe") == "fallback"
        svc.invalidate_pattern("?:caf?")
        assert [svc.get(k) for k in ("f:cafe", "f:café", "f:cafX")] == [None, "fallback", None]
        server.restart(keep_data=True)
        assert eventually(svc.is_redis_available, timeout=5)
        with server.client() as client:
            assert [client.exists(svc.full_key(k)) for k in ("r:cafe", "r:café", "r:cafX")] \
                == [0, 1, 0]
        assert svc.get("r:café") == "redis"
        svc.close()
