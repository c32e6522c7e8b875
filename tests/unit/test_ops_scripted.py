"""get, set and delete driven over a scripted driver: the exact requests, every reply shape.

No sockets: each test says what "Redis" answers and checks what the operation asked and
what it made of the answer (see ``scripted.py``).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
import redis.exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_service._ops import read, write
from cache_service._ops.context import MISSING
from cache_service._ops.protocol import ReplyError, Unavailable, WrongType
from cache_service._ops.requests import Get, Script, Set, Unlink
from cache_service._ops.scripts import SET_UNLESS_FOREIGN
from cache_service.codec import HEADER_SIZE, MAGIC, STAMPER, JsonCodec, pack

from .scripted import Make

DEFAULT = object()
JSON = JsonCodec()


def payload(value: Any, k: str) -> bytes:
    """What ``set`` stores for ``value`` at the Redis key ``k``."""
    return pack(JSON, value, k, 1 << 20, STAMPER.next())


def counts(core: Any) -> dict[str, int]:
    return dict(core._counters.snapshot())


# -- get ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [1, "text", 2.5, None, True, [1, "a"], {"a": [1, {"b": 2}]}])
def test_get_hit_asks_one_get_and_returns_the_value(make_core: Make, value: Any) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    driver.answer(payload(value, k))
    assert driver.run(read.get(core._ctx, "k", DEFAULT)) == value
    assert driver.requests == [Get(k)]
    assert counts(core)["hits"] == 1
    assert counts(core)["misses"] == 0


def test_get_miss_returns_the_default_and_asks_nothing_more(make_core: Make) -> None:
    core, driver = make_core()
    driver.answer(None)
    assert driver.run(read.get(core._ctx, "k", DEFAULT)) is DEFAULT
    assert driver.requests == [Get(core.full_key("k"))]
    assert counts(core)["misses"] == 1


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"[1,", b"nul"])
def test_get_corrupt_payload_of_ours_is_a_miss_and_is_unlinked(make_core: Make,
                                                              body: bytes) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    good = payload(0, k)
    driver.answer(good[:HEADER_SIZE] + body, 1)
    assert driver.run(read.get(core._ctx, "k", DEFAULT)) is DEFAULT
    assert driver.requests == [Get(k), Unlink((k,))]
    assert core._target.counters.snapshot()["corrupt"] == 1
    assert driver.exhausted


@pytest.mark.parametrize("raw", [b"plain text", b"", b"{}", b"\xc5", b"12345678901234567"])
def test_get_foreign_string_is_a_miss_left_alone(make_core: Make, raw: bytes) -> None:
    core, driver = make_core()
    driver.answer(raw)
    assert driver.run(read.get(core._ctx, "k", DEFAULT)) is DEFAULT
    assert driver.requests == [Get(core.full_key("k"))]  # never removed: not ours


def test_get_of_another_redis_type_is_a_miss_left_alone(make_core: Make) -> None:
    core, driver = make_core()
    driver.answer(WrongType("WRONGTYPE Operation against a key holding the wrong kind"))
    assert driver.run(read.get(core._ctx, "k", DEFAULT)) is DEFAULT
    assert len(driver.requests) == 1
    assert counts(core)["misses"] == 1
    assert not core._target.breaker.is_open


@pytest.mark.parametrize(("kind", "text"), [
    (redis.exceptions.OutOfMemoryError, "OOM command not allowed when used memory > 'maxmemory'"),
    (redis.exceptions.BusyLoadingError, "LOADING Redis is loading the dataset in memory"),
    (redis.exceptions.ResponseError, "BUSY Redis is busy running a script"),
    (redis.exceptions.NoPermissionError, "NOPERM User has no permissions to run the 'get' command"),
    (redis.exceptions.ReadOnlyError, "READONLY You can't write against a read only replica."),
    (redis.exceptions.ResponseError, "ERR unknown command"),
])
def test_get_error_reply_is_a_miss_and_the_breaker_stays(make_core: Make,
                                                         kind: type[Exception], text: str) -> None:
    core, driver = make_core()
    driver.answer(kind(text))  # a fresh error: a raised one holds the frames it went through
    assert driver.run(read.get(core._ctx, "k", DEFAULT)) is DEFAULT
    assert not core._target.breaker.is_open
    assert core._target.counters.snapshot()["reply_errors"] == 1
    assert core._target.last_reply_error is not None
    assert core.full_key("k") not in core._target.last_reply_error  # never a key


def test_get_during_an_outage_asks_nothing(make_core: Make) -> None:
    core, driver = make_core()
    driver.answer(redis.exceptions.ConnectionError("Connection refused"))
    assert driver.run(read.get(core._ctx, "k", DEFAULT)) is DEFAULT  # the fallback store is empty
    assert core._target.breaker.is_open
    assert driver.run(read.get(core._ctx, "k", DEFAULT)) is DEFAULT
    assert len(driver.requests) == 1  # the second get went to the fallback store only


def test_get_of_any_reply_bytes_never_raises_nor_writes(make_core: Make) -> None:
    """Whatever bytes Redis holds at our key, a get returns a value or the default, and the
    only write it may ask for is the removal of that key (a payload of ours it cannot
    serve)."""
    core, driver = make_core()
    k = core.full_key("k")

    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(st.one_of(
        st.binary(max_size=64),
        st.binary(max_size=40).map(lambda b: MAGIC + b),
        st.binary(max_size=40).map(lambda b: payload(0, k)[:HEADER_SIZE] + b),
    ))
    def check(raw: bytes) -> None:
        driver.requests.clear()
        driver.answer(raw, 1)
        driver.run(read.get(core._ctx, "k", DEFAULT))
        assert driver.requests[0] == Get(k)
        assert driver.requests[1:] in ([], [Unlink((k,))])
        driver.script.clear()
        assert not core._target.breaker.is_open

    check()


# -- set ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("ttl", "px"), [
    (None, 300_000), (1, 1000), (1.5, 1500), (0.0004, 1), (0.0015, 2),
    (timedelta(minutes=2), 120_000), (86_400 * 30, 86_400 * 30 * 1000),
])
def test_set_is_one_set_px_with_the_ttl_in_ms(make_core: Make, ttl: Any, px: int) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    driver.answer(True)
    assert driver.run(write.put(core._ctx, "k", {"v": 1}, ttl)) is None
    [(key, stored, got_px, nx, get)] = driver.requests
    assert type(driver.requests[0]) is Set
    assert (key, got_px, nx, get) == (k, px, False, False)
    assert stored[:2] == MAGIC
    assert stored[HEADER_SIZE:] == b'{"v":1}'
    assert counts(core)["sets"] == 1


def test_set_ttl_is_never_rounded_down_to_zero(make_core: Make) -> None:
    core, driver = make_core()

    @settings(max_examples=200, deadline=None)
    @given(st.floats(min_value=1e-9, max_value=1e6, allow_nan=False))
    def check(ttl: float) -> None:
        driver.requests.clear()
        driver.answer(True)
        driver.run(write.put(core._ctx, "k", 1, ttl))
        px = driver.requests[0].px
        assert px == max(1, math.ceil(ttl * 1000))

    check()


def test_polite_set_is_one_script_that_spares_foreign_keys(make_core: Make) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    driver.answer(0)  # the script found a foreign key and left it
    driver.run(write.put(core._ctx, "k", 7, 2, polite=True))
    [(text, keys, args)] = driver.requests
    assert type(driver.requests[0]) is Script
    assert text == SET_UNLESS_FOREIGN
    assert keys == (k,)
    assert args[1:] == (2000, MAGIC)
    assert args[0][HEADER_SIZE:] == b"7"


def test_set_refused_drops_the_old_value_and_keeps_the_breaker(make_core: Make) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    driver.answer(redis.exceptions.OutOfMemoryError("OOM command not allowed"), 1)
    assert driver.run(write.put(core._ctx, "k", 1, 10)) is None
    assert [type(r) for r in driver.requests] == [Set, Unlink]
    assert driver.requests[1] == Unlink((k,))  # the old value is never served again
    assert not core._target.breaker.is_open
    assert len(core._target.journal) == 0


def test_set_that_redis_cannot_take_and_cannot_unlink_is_journaled(make_core: Make) -> None:
    """BUSY on the SET and on the UNLINK of the old value: the one error reply that opens the
    breaker, so the write is journaled and replayed instead of the old value served later."""
    core, driver = make_core()
    busy = redis.exceptions.ResponseError("BUSY Redis is busy running a script")
    driver.answer(busy, busy)
    driver.run(write.put(core._ctx, "k", 1, 10))
    target = core._target
    assert target.breaker.is_open
    assert [w.keys for w in target.journal.plan()] == [(core.full_key("k"),)]
    assert driver.run(read.get(core._ctx, "k", DEFAULT)) == 1  # from the fallback store, no request
    assert len(driver.requests) == 2


def test_set_when_redis_is_unavailable_once_tries_again(make_core: Make) -> None:
    """``Unavailable`` thrown without the breaker opening (Redis came back meanwhile): the
    write is sent again rather than lost or journaled."""
    core, driver = make_core()
    driver.answer(Unavailable("gone for one request"), True)
    driver.run(write.put(core._ctx, "k", 1, 10))
    assert [type(r) for r in driver.requests] == [Set, Set]
    assert len(core._target.journal) == 0


# -- delete ---------------------------------------------------------------------------------
def test_delete_is_one_unlink_of_every_key(make_core: Make) -> None:
    core, driver = make_core()
    driver.answer(2)
    assert driver.run(write.delete(core._ctx, ("a", "b", "c"))) == 2
    assert driver.requests == [Unlink(tuple(core.full_key(k) for k in "abc"))]
    assert counts(core)["deletes"] == 3


def test_delete_of_nothing_asks_nothing(make_core: Make) -> None:
    core, driver = make_core()
    assert driver.run(write.delete(core._ctx, ())) == 0
    assert driver.requests == []


def test_delete_denied_by_a_setting_counts_zero_and_keeps_the_breaker(make_core: Make) -> None:
    core, driver = make_core()
    driver.answer(redis.exceptions.NoPermissionError("NOPERM no permissions to run 'unlink'"))
    assert driver.run(write.delete(core._ctx, ("a",))) == 0
    assert not core._target.breaker.is_open
    assert len(core._target.journal) == 0
    assert core._target.misconfiguration is not None


@pytest.mark.parametrize(("kind", "text"), [
    (redis.exceptions.OutOfMemoryError, "OOM command not allowed"),
    (redis.exceptions.ResponseError, "BUSY Redis is busy running a script"),
    (redis.exceptions.BusyLoadingError, "LOADING Redis is loading the dataset in memory"),
])
def test_delete_refused_by_an_error_reply_is_journaled(make_core: Make, kind: type[Exception],
                                                      text: str) -> None:
    """A removal is never dropped: refused by an error reply, the breaker opens and the
    journal replays it once Redis takes requests again."""
    core, driver = make_core()
    driver.answer(kind(text))
    driver.run(write.delete(core._ctx, ("a",)))
    assert core._target.breaker.is_open
    assert [w.keys for w in core._target.journal.plan()] == [(core.full_key("a"),)]


def test_protocol_errors_are_what_the_driver_throws(make_core: Make) -> None:
    """The request's own failures reach the operation as protocol exceptions."""
    core, driver = make_core()
    kinds = []
    for error in (redis.exceptions.ResponseError("WRONGTYPE Operation against a key"),
                  redis.exceptions.ResponseError("OOM command not allowed"),
                  redis.exceptions.ConnectionError("Connection refused")):
        thrown = core._target.failed(error)
        kinds.append(type(thrown))
    assert kinds == [WrongType, ReplyError, Unavailable]
    assert driver.run(read.get(core._ctx, "k", MISSING)) is MISSING  # the breaker opened: memory
    assert driver.requests == []
