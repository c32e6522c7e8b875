"""Breaker and journal decisions over a scripted driver, on both fallback stores.

An outage is a connection error the driver accounts (as ``Target.run`` does); the recovery
is the target's recovery operation, driven by the test instead of the background thread.
The pure pieces (``Breaker`` transitions, ``fold``, ``Guard``) are tested without any
operation at the end.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_service._host.breaker import Breaker
from cache_service._host.journal import ALL_OURS, KEY, PATTERN, WRITER_SHIFT, Guard, fold
from cache_service._host.state import GEN, HostState
from cache_service._ops import read, write
from cache_service._ops.requests import Call, Get, Ping, Set, Unlink
from cache_service._redis.backend import drop_idle, refresh_topology
from cache_service.codec import STAMPER, JsonCodec, pack
from cache_service.config import resolve_location

from .scripted import Make, ScriptedDriver

DEFAULT = object()
JSON = JsonCodec()


def refused(request: Any) -> Exception:
    """A script step: the connection is refused (a fresh error for each request)."""
    return redis.exceptions.ConnectionError("Error 111 connecting. Connection refused.")


@pytest.fixture(params=["host", "process"])
def fallback(request: pytest.FixtureRequest) -> str:
    """Both fallback stores: host-shared (SQLite) and per-process (memory)."""
    return str(request.param)


def go_down(make_core: Make, fallback: str) -> tuple[Any, ScriptedDriver]:
    """A core whose first request met a refused connection: the breaker is open."""
    core, driver = make_core(fallback=fallback)
    driver.answer(refused)
    driver.run(read.get(core._ctx, "seed", DEFAULT))
    assert core._target.breaker.state == Breaker.OPEN
    assert core._target.snapshot()["fallback"] == fallback
    driver.requests.clear()
    return core, driver


def recover(driver: ScriptedDriver, *replies: Any) -> bool:
    """Drive the target's recovery operation: reached, then ``replies`` for the replay."""
    driver.requests.clear()
    driver.answer(None, None, True, *replies)  # drop idle connections, topology, PING
    result: bool = driver.run(driver.target._recover())
    assert driver.exhausted
    return result


def test_an_outage_opens_the_breaker_at_once_and_counts_once(make_core: Make,
                                                            fallback: str) -> None:
    core, _ = go_down(make_core, fallback)
    target = core._target
    assert target.breaker.opened == 1
    assert target.counters.snapshot()["errors"] == 1


def test_writes_during_an_outage_go_to_the_fallback_and_the_journal(make_core: Make,
                                                                    fallback: str) -> None:
    core, driver = go_down(make_core, fallback)
    target = core._target
    driver.run(write.put(core._ctx, "a", {"x": 1}, 30))
    driver.run(write.put(core._ctx, "b", 2, 30))
    assert driver.run(write.delete(core._ctx, ("b",))) == 1
    assert driver.run(read.get(core._ctx, "a", DEFAULT)) == {"x": 1}
    assert driver.run(read.get(core._ctx, "b", DEFAULT)) is DEFAULT
    assert driver.requests == []  # nothing asked of Redis while it is out
    [work] = target.journal.plan()
    assert set(work.keys) == {core.full_key("a"), core.full_key("b")}


def test_pattern_invalidation_during_an_outage_is_one_pattern_row(make_core: Make,
                                                                  fallback: str) -> None:
    core, driver = go_down(make_core, fallback)
    driver.run(write.put(core._ctx, "user:1", 1, 30))
    driver.run(write.invalidate_pattern(core._ctx, "user:*"))
    plan = core._target.journal.plan()
    assert [(w.keys, w.pattern) for w in plan] == [((), core._keys.pattern("user:*"))]


def test_recovery_replays_the_journal_then_closes(make_core: Make, fallback: str) -> None:
    core, driver = go_down(make_core, fallback)
    target = core._target
    driver.run(write.put(core._ctx, "a", 1, 30))
    assert recover(driver, 1) is True
    assert driver.requests == [Call(drop_idle), Call(refresh_topology), Ping(),
                               Unlink((core.full_key("a"),))]
    assert target.breaker.state == Breaker.CLOSED
    assert len(target.journal) == 0
    assert target.counters.snapshot()["replays"] == 1
    # Redis is in use again: a get asks Redis, not the fallback's copy
    driver.requests.clear()
    driver.answer(None)
    assert driver.run(read.get(core._ctx, "a", DEFAULT)) is DEFAULT
    assert driver.requests == [Get(core.full_key("a"))]


def test_recovery_that_cannot_reach_redis_stays_open(make_core: Make, fallback: str) -> None:
    core, driver = go_down(make_core, fallback)
    driver.run(write.put(core._ctx, "a", 1, 30))
    driver.answer(None, None, refused)
    assert driver.run(core._target._recover()) is False
    assert core._target.breaker.state == Breaker.OPEN
    assert len(core._target.journal) == 1


def test_replay_cut_short_keeps_what_was_not_confirmed(make_core: Make,
                                                      fallback: str) -> None:
    core, driver = go_down(make_core, fallback)
    target = core._target
    driver.run(write.put(core._ctx, "a", 1, 30))
    driver.answer(None, None, True, refused)  # reached, then lost during the UNLINK
    assert driver.run(target._recover()) is False
    assert target.breaker.state == Breaker.OPEN  # a failure while draining re-opens
    assert [w.keys for w in target.journal.plan()] == [(core.full_key("a"),)]
    assert recover(driver, 1) is True
    assert len(target.journal) == 0


def test_a_late_write_older_than_the_replay_is_a_miss_and_removed(make_core: Make,
                                                                  fallback: str) -> None:
    """A SET sent before the outage that reaches Redis after the replay carries an older
    stamp than the replay's tombstone: a read treats it as a miss and removes it."""
    core, driver = go_down(make_core, fallback)
    k = core.full_key("a")
    late = pack(JSON, "old", k, 1 << 20, STAMPER.next())  # stamped before the outage write
    driver.run(write.delete(core._ctx, ("a",)))
    assert recover(driver, 0) is True
    driver.requests.clear()
    driver.answer(late, 1)
    assert driver.run(read.get(core._ctx, "a", DEFAULT)) is DEFAULT
    assert driver.requests == [Get(k), Unlink((k,))]
    fresh = pack(JSON, "new", k, 1 << 20, STAMPER.next())
    driver.answer(fresh)
    assert driver.run(read.get(core._ctx, "a", DEFAULT)) == "new"


def test_writes_while_draining_go_to_redis_and_drop_the_fallback_copy(make_core: Make,
                                                                    fallback: str) -> None:
    core, driver = go_down(make_core, fallback)
    target = core._target
    driver.run(write.put(core._ctx, "a", 1, 30))
    assert target.breaker.draining()
    driver.answer(True)
    driver.run(write.put(core._ctx, "a", 2, 30))
    assert type(driver.requests[0]) is Set
    assert driver.requests[0].key == core.full_key("a")
    assert driver.run(read.get(core._ctx, "a", DEFAULT)) is DEFAULT  # reads stay on the fallback
    assert len(driver.requests) == 1


# -- pure decisions ---------------------------------------------------------------------------
def page_breaker() -> Breaker:
    location = resolve_location(url="redis://127.0.0.1:1/0", host=None, port=None, db=None,
                                username=None, password=None, ssl=None, ssl_ca_certs=None,
                                ssl_certfile=None, ssl_keyfile=None, sentinels=None,
                                service_name=None, sentinel_password=None, cluster=False,
                                read_from_replicas=False)
    return Breaker(HostState(location, None), 0.5, 1.5)


def test_breaker_transitions_and_generations() -> None:
    breaker = page_breaker()
    page = breaker.page
    gen = page[GEN]
    assert breaker.state == Breaker.CLOSED
    assert not breaker.draining()  # only an open breaker drains
    assert breaker.failure() is True  # ends a period of Redis use
    assert breaker.failure() is False
    assert (breaker.state, breaker.opened, page[GEN]) == (Breaker.OPEN, 1, gen + 1)
    assert breaker.close_if(lambda: True) is False  # never straight from open
    assert breaker.draining() is True
    assert breaker.close_if(lambda: False) is False  # journal not empty yet
    assert breaker.failure() is False  # a failure while draining re-opens, same outage
    assert (breaker.state, breaker.opened, page[GEN]) == (Breaker.OPEN, 1, gen + 1)
    assert breaker.draining() is True
    assert breaker.close_if(lambda: True) is True
    assert (breaker.state, breaker.closed, page[GEN]) == (Breaker.CLOSED, 1, gen + 2)
    assert breaker.outage_started is None


def stamp(writer: int, seq: int) -> int:
    return (writer << WRITER_SHIFT) | seq


def test_guard_blocks_only_older_stamps_of_the_same_writer() -> None:
    guard = Guard([(KEY, "cs:p::a", 7, 100, 50.0), (PATTERN, "cs:p::u:*", 7, 200, 50.0)])
    assert guard.blocks("cs:p::a", stamp(7, 99), now=10.0)
    assert not guard.blocks("cs:p::a", stamp(7, 100), now=10.0)  # the replayed write itself
    assert not guard.blocks("cs:p::a", stamp(8, 1), now=10.0)  # another writer: no order
    assert guard.blocks("cs:p::u:1", stamp(7, 150), now=10.0)
    assert not guard.blocks("cs:p::v:1", stamp(7, 150), now=10.0)
    assert not guard.blocks("cs:p::a", stamp(7, 1), now=50.0)  # tombstones expire


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([KEY, PATTERN]),
                          st.sampled_from(["cs:a::x", "cs:a::y", "cs:b::x", "cs:c::*"]),
                          st.integers(0, 5), st.integers(0, 1000)), max_size=40),
       st.integers(1, 6))
def test_fold_bounds_rows_and_never_loses_an_invalidation(rows: list[Any], bound: int) -> None:
    """Folded rows stay within the bound (per writer, or one clear of all) and still cover
    every key each writer invalidated, with at least its newest stamp."""
    folded = fold(rows, bound)
    assert all(kind == PATTERN for kind, *_ in folded)
    writers = {w for _, _, w, _ in rows}
    assert len(folded) <= max(bound, len(writers))
    for _, name, writer, seq in rows:
        head = name.split("::")[0] + "::*"
        assert any(w == writer and s >= seq and p in (head, ALL_OURS)
                   for _, p, w, s in folded), (name, writer)
