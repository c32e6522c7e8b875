"""One contract for the fallback stores (``memory.FallbackStore``), run over both of them:
the per-process ``MemoryStore`` and the host-shared ``fallback.SharedStore`` (SQLite in a
private state directory). Each test builds its store with an injected clock (no sleeping) and
checks only what the protocol and both implementations promise: round trips (with the kept
decoded value, or ``NO_VALUE`` where a store keeps none), TTLs, invalidation by keys and by
Redis glob, both bounds, overwrites, oversize values, outage epochs, counts and threads.

What they do differently, and so is not tested here: a read gives a ``MemoryStore`` entry a
second chance against eviction (CLOCK), a ``SharedStore`` row none (oldest written goes
first); ``len`` of a ``MemoryStore`` drops to 0 at ``new_epoch``, a ``SharedStore``'s only
when its next write sweeps the rows of the earlier generation.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cache_service._host.memory_store import NO_VALUE, FallbackStore, MemoryStore
from cache_service._host.shared_store import SharedStore
from cache_service._host.state import GEN, HostState
from cache_service.config import parse_url
from cache_service.redis_glob import compile_glob

from .helpers import FakeClock, hammer

OVERHEAD = 96  # per-entry bytes both stores count beyond key and payload


def size(key: str, payload: bytes, shared: bool = False) -> int:
    """What one entry adds to ``nbytes``: its key in characters (the memory store) or in UTF-8
    bytes (the shared store, as SQLite counts a BLOB: the length of TEXT stops at a NUL)."""
    return (len(key.encode()) if shared else len(key)) + len(payload) + OVERHEAD


@dataclass
class Subject:
    """A store under test, its clock, and what the target does around it."""

    kind: str  # "memory" or "shared"
    store: FallbackStore
    clock: FakeClock
    keeps_values: bool  # whether ``lookup`` gives back the decoded value ``set`` was given
    outage_turns: Callable[[], None]  # an outage begins or ends (as ``Target._observe`` sees)


def _release(host: HostState) -> None:
    """Close what a HostState opened: a test's must not outlive the test's directory."""
    host.close()


@pytest.fixture(params=["memory", "shared"])
def make_store(request: pytest.FixtureRequest,
               tmp_path: Path) -> Iterator[Callable[..., Subject]]:
    """Build stores of this test's kind: ``make_store(max_entries=..., max_bytes=...)``.
    Each shared store gets a state directory of its own under ``tmp_path`` (two HostStates
    on one database in one process would drop each other's SQLite locks)."""
    kind: str = request.param
    hosts: list[HostState] = []
    count = itertools.count()

    def make(max_entries: int = 1000, max_bytes: int = 10**6,
             sweep_interval: float = 1.0) -> Subject:
        clock = FakeClock()
        if kind == "memory":
            memory = MemoryStore(max_entries, max_bytes, clock, sweep_interval=sweep_interval)
            return Subject(kind, memory, clock, True, memory.new_epoch)
        host = HostState(parse_url("redis://127.0.0.1:1/0"), tmp_path / f"state{next(count)}")
        hosts.append(host)
        assert host.shared, host.problem  # the files, not the per-process fallback
        shared = SharedStore(host, max_entries, max_bytes, clock, sweep_interval=sweep_interval)

        def outage_turns() -> None:
            with host.lock():  # what the breaker does at each transition, then the target
                host.page[GEN] += 1
            shared.new_epoch()

        return Subject(kind, shared, clock, False, outage_turns)

    yield make
    for host in hosts:
        _release(host)


@pytest.fixture
def subject(make_store: Callable[..., Subject]) -> Subject:
    """A store with room to spare."""
    return make_store()


def test_the_store_has_every_member_of_the_protocol(subject: Subject) -> None:
    members = [name for name in vars(FallbackStore)
               if not name.startswith("_") or name == "__len__"]
    assert len(members) == 11, members
    assert [name for name in members if not hasattr(subject.store, name)] == []


# -- round trips ---------------------------------------------------------------------------------
def test_set_then_lookup_gives_the_payload_and_the_kept_value(subject: Subject) -> None:
    store, kept = subject.store, {"decoded": [1, 2]}
    store.set("k", b"payload", 60, kept)
    found = store.lookup("k")
    assert found is not None
    payload, value = found
    assert payload == b"payload"
    assert value is (kept if subject.keeps_values else NO_VALUE)
    assert store.get("k") == b"payload"
    store.set("plain", b"p", 60)  # no decoded value given: none comes back
    assert store.lookup("plain") == (b"p", NO_VALUE)
    assert store.lookup("missing") is None
    assert store.get("missing") is None
    assert len(store) == 2


def test_an_overwrite_replaces_payload_value_and_ttl(subject: Subject) -> None:
    store = subject.store
    store.set("k", b"old", 10, ("old decoded",))
    store.set("k", b"newer", 100)  # no value now: the old decoded one must not be served
    assert store.lookup("k") == (b"newer", NO_VALUE)
    assert store.remaining("k") == pytest.approx(100)
    subject.clock.advance(50)  # past the first TTL
    assert store.get("k") == b"newer"
    assert (len(store), store.nbytes) == (1, size("k", b"newer"))
    store.set("k", b"v3", 100, "v3")
    assert store.lookup("k") == (b"v3", "v3" if subject.keeps_values else NO_VALUE)


def test_keys_are_unicode_and_payloads_are_bytes(subject: Subject) -> None:
    store, payload = subject.store, bytes(range(256))
    keys = ("café", "日本:1", "a b\tc", "😀", "u:*?[x]", "U:*?[X]")
    for key in keys:
        store.set(key, payload, 60)
    for key in keys:
        assert store.get(key) == payload
    assert (store.get("cafe"), store.get("CAFÉ")) == (None, None)
    shared = subject.kind == "shared"
    assert store.nbytes == sum(size(k, payload, shared) for k in keys)
    assert store.delete(keys) == len(keys)
    assert (len(store), store.nbytes) == (0, 0)


# -- TTLs ----------------------------------------------------------------------------------------
def test_ttl_expiry_follows_the_injected_clock(subject: Subject) -> None:
    store, clock = subject.store, subject.clock
    store.set("a", b"1", ttl=10)
    store.set("b", b"2", ttl=0.5)
    assert store.remaining("a") == pytest.approx(10)
    clock.advance(9.999)
    assert store.get("a") == b"1"
    assert store.remaining("a") == pytest.approx(0.001)
    assert (store.get("b"), store.lookup("b"), store.remaining("b")) == (None, None, 0.0)
    clock.advance(0.001)
    assert (store.get("a"), store.lookup("a"), store.remaining("a")) == (None, None, 0.0)
    assert store.remaining("never") == 0.0
    store.set("a", b"again", ttl=5)  # an expired key is writable as any other
    assert store.get("a") == b"again"


def test_a_write_after_the_sweep_interval_drops_expired_entries_from_the_counts(
        make_store: Callable[..., Subject]) -> None:
    subject = make_store(sweep_interval=1.0)
    store = subject.store
    for i in range(20):
        store.set(f"old{i}", b"v" * 10, ttl=0.5)
    store.set("long", b"v", ttl=60)
    subject.clock.advance(2)  # nothing read: only a sweep can drop them
    store.set("new", b"v", ttl=60)
    assert len(store) == 2
    assert store.nbytes == size("long", b"v") + size("new", b"v")
    assert store.evictions == 0  # expiry is not eviction


# -- invalidation --------------------------------------------------------------------------------
def test_delete_removes_keys_and_counts_the_live_ones(subject: Subject) -> None:
    store = subject.store
    store.set("a", b"1", 60)
    store.set("b", b"2", 60)
    store.set("short", b"3", 1)
    subject.clock.advance(2)
    assert store.delete(["a", "short", "missing", "a"]) == 1  # an expired entry is not live
    assert (store.get("a"), store.get("b")) == (None, b"2")
    assert store.delete([]) == 0
    assert store.delete(iter(["b"])) == 1
    assert store.delete(["b"]) == 0
    assert (len(store), store.nbytes) == (0, 0)


KEYS = ["u:1", "u:2", "u:10", "u:*", "u:é", "U:1", "v:1", "u:", "xu:1"]


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("u:?", {"u:1", "u:2", "u:*"}),  # one byte: not é (two in UTF-8)
        ("u:??", {"u:10", "u:é"}),
        ("u:*", {"u:", "u:1", "u:2", "u:10", "u:*", "u:é"}),
        ("u:[12]", {"u:1", "u:2"}),
        ("u:[^1]", {"u:2", "u:*"}),
        ("u:\\*", {"u:*"}),
        ("u:[0-9]*", {"u:1", "u:2", "u:10"}),
        ("[uv]:1", {"u:1", "v:1"}),
        ("*", set(KEYS)),
        ("nothing*", set()),
    ],
)
def test_delete_matching_follows_redis_glob(subject: Subject, pattern: str,
                                            matches: set[str]) -> None:
    store = subject.store
    for key in KEYS:
        store.set(key, key.encode(), 60)
    assert store.delete_matching(compile_glob(pattern)) == len(matches)
    assert {k for k in KEYS if store.get(k) is None} == matches
    assert len(store) == len(KEYS) - len(matches)
    shared = subject.kind == "shared"
    assert store.nbytes == sum(size(k, k.encode(), shared) for k in KEYS if k not in matches)


def test_matching_lists_live_keys_as_redis_glob(subject: Subject) -> None:
    store = subject.store
    for key in KEYS:
        store.set(key, key.encode(), 60)
    store.set("short-lived", b"v", 1)
    subject.clock.advance(2)
    assert sorted(store.matching(compile_glob("*"), 1000)) == sorted(KEYS)
    assert len(store.matching(compile_glob("*"), 2)) == 2
    assert store.matching(compile_glob("nothing*"), 10) == []
    subject.outage_turns()  # entries of the last outage are never listed
    assert store.matching(compile_glob("*"), 10) == []


def test_delete_matching_everything_clears_and_counts_only_live_entries(
        subject: Subject) -> None:
    store = subject.store
    for i in range(5):
        store.set(f"k{i}", b"v", 60 if i < 3 else 1)
    subject.clock.advance(2)
    assert store.delete_matching(compile_glob("*")) == 3
    assert (len(store), store.nbytes) == (0, 0)
    assert store.delete_matching(compile_glob("*")) == 0
    store.set("k0", b"after", 60)
    assert store.get("k0") == b"after"


def test_an_outage_turning_forgets_every_entry(subject: Subject) -> None:
    """Entries of one outage are never served in the next period, whatever their TTL."""
    store = subject.store
    store.set("a", b"1", 600, "1")
    store.set("b", b"2", 600)
    subject.outage_turns()
    assert (store.lookup("a"), store.get("b")) == (None, None)
    assert (store.remaining("a"), store.delete(["a", "b"])) == (0.0, 0)
    store.set("a", b"new", 60)
    assert store.get("a") == b"new"
    subject.clock.advance(2)  # a sweep is due: the earlier period's rows leave the counts
    store.set("c", b"3", 60)
    assert (len(store), store.nbytes) == (2, size("a", b"new") + size("c", b"3"))


# -- bounds --------------------------------------------------------------------------------------
def test_the_entry_bound_evicts_the_oldest_written_first(
        make_store: Callable[..., Subject]) -> None:
    store = make_store(max_entries=3).store
    for i in range(50):
        store.set(f"k{i}", b"v", 60)
        assert len(store) == min(i + 1, 3)
    assert store.evictions == 47
    assert [i for i in range(50) if store.get(f"k{i}") is not None] == [47, 48, 49]


def test_an_overwrite_counts_as_the_newest_write(make_store: Callable[..., Subject]) -> None:
    store = make_store(max_entries=3).store
    for key in "abc":
        store.set(key, b"v", 60)
    store.set("a", b"rewritten", 60)
    assert store.evictions == 0  # an overwrite adds no entry
    store.set("d", b"v", 60)
    assert [k for k in "abcd" if store.get(k) is not None] == ["a", "c", "d"]
    assert store.evictions == 1


def test_the_entry_just_written_is_never_the_one_evicted(
        make_store: Callable[..., Subject]) -> None:
    store = make_store(max_entries=1).store
    for key in "abc":
        store.set(key, b"v", 60)
        assert store.get(key) == b"v"
    assert (len(store), store.evictions) == (1, 2)


def test_the_byte_bound_holds_after_every_write(make_store: Callable[..., Subject]) -> None:
    entry = size("k0", b"x" * 100)
    store = make_store(max_bytes=3 * entry + 10).store
    for i in range(10):
        store.set(f"k{i}", b"x" * 100, 60)
        assert store.nbytes <= 3 * entry + 10
    assert (len(store), store.nbytes, store.evictions) == (3, 3 * entry, 7)
    assert [i for i in range(10) if store.get(f"k{i}")] == [7, 8, 9]
    store.set("k9", b"x" * 150, 60)  # an overwrite that grows past the bound evicts too
    assert store.nbytes <= 3 * entry + 10
    assert (store.get("k8"), store.get("k9")) == (b"x" * 100, b"x" * 150)
    assert store.get("k7") is None


def test_a_value_larger_than_the_byte_bound_is_not_stored_and_drops_the_old_one(
        make_store: Callable[..., Subject]) -> None:
    store = make_store(max_bytes=1000).store
    store.set("other", b"o", 60)
    store.set("k", b"small", 60, "small")
    store.set("k", b"x" * 1000, 60, "huge")
    assert (store.lookup("k"), store.get("other")) == (None, b"o")
    assert (len(store), store.nbytes, store.evictions) == (1, size("other", b"o"), 0)
    store.set("new", b"x" * 2000, 60)
    assert store.get("new") is None
    assert len(store) == 1
    store.set("fits", b"x" * (1000 - OVERHEAD - 4 - size("other", b"o")), 60)
    assert store.get("fits") is not None  # exactly at the bound is within it
    assert store.nbytes == 1000


def test_nbytes_counts_keys_payloads_and_overhead(subject: Subject) -> None:
    store = subject.store
    assert (len(store), store.nbytes, store.evictions) == (0, 0, 0)
    store.set("key", b"12345", 60)
    store.set("other", b"", 60)
    assert store.nbytes == size("key", b"12345") + size("other", b"")
    store.set("key", b"1234567890", 60)
    assert store.nbytes == size("key", b"1234567890") + size("other", b"")
    store.delete(["key", "other"])
    assert (len(store), store.nbytes) == (0, 0)


def test_keys_with_a_nul_character_are_counted_like_any_other(subject: Subject) -> None:
    """A key may hold any character but a lone surrogate (``keys.validate_text``), NUL too."""
    store, key = subject.store, "a\x00bc"
    store.set(key, b"12345", 60)
    assert (store.get(key), store.get("a")) == (b"12345", None)
    assert store.nbytes == size(key, b"12345")
    store.set(key, b"12345", 60)
    assert store.nbytes == size(key, b"12345")
    assert store.delete([key]) == 1
    assert (len(store), store.nbytes) == (0, 0)


# -- threads -------------------------------------------------------------------------------------
def test_threads_keep_the_bounds_and_never_read_another_keys_payload(
        make_store: Callable[..., Subject]) -> None:
    store = make_store(max_entries=20, max_bytes=20 * size("k00", b"k00:" + b"x" * 40)).store
    wrong: list[Any] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(150):
            key = f"k{(n * 7 + i) % 40:02d}"
            store.set(key, f"{key}:".encode() + b"x" * (i % 41), 60)
            for probe in (key, f"k{i % 40:02d}"):
                got = store.get(probe)
                if got is not None and not got.startswith(f"{probe}:".encode()):
                    with lock:
                        wrong.append((probe, got))
            if i % 25 == 0:
                store.delete([key])
            if i % 60 == 0:
                store.delete_matching(compile_glob("k1*"))

    assert hammer(worker, threads=4) == []
    assert wrong == []
    assert len(store) <= 20
    assert store.nbytes <= 20 * size("k00", b"k00:" + b"x" * 40)
    live = [f"k{i:02d}" for i in range(40) if store.get(f"k{i:02d}") is not None]
    assert len(live) == len(store)
