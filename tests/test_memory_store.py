"""The bounded CLOCK+TTL store, with an injected clock (no sleeping)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

from cache_service import CacheService
from cache_service._host.memory_store import NO_VALUE, MemoryStore
from cache_service._ops import read
from cache_service.redis_glob import compile_glob

from .helpers import FakeClock, hammer, unique


def test_ttl_with_injected_clock() -> None:
    clock = FakeClock()
    store = MemoryStore(100, 10**6, clock)
    store.set("a", b"1", ttl=10)
    clock.advance(9.999)
    assert store.get("a") == b"1"
    clock.advance(0.001)
    assert store.get("a") is None
    assert len(store) == 0


def test_lru_eviction_by_entries() -> None:
    store = MemoryStore(3, 10**6, FakeClock())
    for k in "abc":
        store.set(k, b"v", 60)
    store.get("a")  # a is now most recently used
    store.set("d", b"v", 60)
    assert store.get("b") is None
    assert [k for k in "acd" if store.get(k)] == ["a", "c", "d"]
    assert store.evictions == 1


def test_byte_bound_holds() -> None:
    store = MemoryStore(10_000, 50_000, FakeClock())
    for i in range(1000):
        store.set(f"k{i}", b"x" * 1000, 60)
        assert store.nbytes <= 50_000
    assert 0 < len(store) < 50
    store.set("huge", b"x" * 60_000, 60)
    assert store.get("huge") is None


def test_periodic_sweep_removes_expired_entries_without_reads() -> None:
    clock = FakeClock()
    store = MemoryStore(1000, 10**6, clock, sweep_interval=1.0)
    for i in range(100):
        store.set(f"old{i}", b"v", ttl=0.5)
    clock.advance(2)
    store.set("new", b"v", ttl=60)
    assert len(store) == 1


def test_epoch_hides_entries_of_an_earlier_outage() -> None:
    store = MemoryStore(100, 10**6, FakeClock())
    store.set("a", b"1", 60)
    store.new_epoch()
    assert store.get("a") is None


def test_delete_matching_uses_redis_glob() -> None:
    store = MemoryStore(100, 10**6, FakeClock())
    for k in ("u:1", "u:2", "u:10", "v:1"):
        store.set(k, b"x", 60)
    assert store.delete_matching(compile_glob("u:?")) == 2
    assert store.get("u:10") == b"x"


def test_service_ttl_on_memory_with_injected_clock() -> None:
    clock = FakeClock()
    svc = CacheService(unique(), url=f"memory://{unique()}", clock=clock, default_ttl=60)
    svc.set("a", 1)
    svc.set("b", 2, ttl=5)
    clock.advance(5)
    assert (svc.get("a"), svc.get("b")) == (1, None)
    clock.advance(55)
    assert svc.get("a") is None


def test_service_memory_bound() -> None:
    svc = CacheService(unique(), url=f"memory://{unique()}", max_memory_entries=50)
    for i in range(500):
        svc.set(f"k{i}", i)
    stats = svc.stats()["target"]
    assert stats["memory_entries"] == 50
    assert svc.get("k499") == 499
    assert svc.get("k0") is None


def test_thread_safety_under_eviction_pressure() -> None:
    store = MemoryStore(64, 10**6, FakeClock())

    def worker(n: int) -> None:
        for i in range(2000):
            store.set(f"{n}:{i % 100}", b"v" * (i % 7), 60)
            store.get(f"{(n + 1) % 8}:{i % 100}")
            if i % 97 == 0:
                store.delete_matching(compile_glob(f"{n}:1*"))

    assert hammer(worker) == []
    assert len(store) <= 64
    assert store.nbytes == sum(len(k) + len(e[2]) + 96 for k, e in store._data.items())


def test_memory_only_targets_keep_no_journal() -> None:
    svc = CacheService(unique(), url=f"memory://{unique()}", journal_max_entries=3)
    for i in range(20):
        svc.set(f"k{i}", i)
        svc.delete(f"k{i}")
    target = svc.stats()["target"]
    assert (target["journal_size"], target["journal_overflows"]) == (0, 0)


def test_remaining_is_the_live_entrys_ttl_left() -> None:
    clock = FakeClock()
    store = MemoryStore(100, 10**6, clock)
    assert store.remaining("a") == 0.0
    store.set("a", b"1", ttl=10)
    clock.advance(4)
    assert store.remaining("a") == 6
    clock.advance(7)
    assert store.remaining("a") == 0.0
    store.set("b", b"1", ttl=10)
    store.new_epoch()
    assert store.remaining("b") == 0.0


def test_ttl_and_counters_on_memory_follow_the_injected_clock() -> None:
    clock = FakeClock()
    svc = CacheService(unique(), url=f"memory://{unique()}", clock=clock)
    assert svc.incr("n", ttl=10) == 1
    clock.advance(4)
    assert svc.ttl("n") == 6
    assert svc.incr("n", ttl=100) == 2  # an existing TTL is kept
    assert svc.ttl("n") == 6
    assert svc.touch("n", 30) is True
    assert svc.ttl("n") == 30
    clock.advance(30)
    assert (svc.get("n"), svc.ttl("n"), svc.exists("n")) == (None, None, False)
    svc.set("t", "v", ttl=5, tags=["x"])
    clock.advance(4)
    assert svc.touch("t", 60) is True  # its tag token is kept alive as long
    clock.advance(30)
    assert svc.get("t") == "v"
    svc.invalidate_tags("x")
    assert svc.get("t") is None


# -- CLOCK (second chance) and the lock-free hit path ------------------------------------------
def test_a_referenced_entry_gets_one_second_chance() -> None:
    store = MemoryStore(3, 10**6, FakeClock())
    for k in "abc":
        store.set(k, b"v", 60)
    store.get("a")
    store.set("d", b"v", 60)  # a is passed over (flag cleared, moved to the new end), b goes
    assert list(store._data) == ["c", "d", "a"]
    store.set("e", b"v", 60)
    store.set("f", b"v", 60)  # c, then d go
    assert list(store._data) == ["a", "e", "f"]
    store.set("g", b"v", 60)  # a was not read again since its second chance: it goes
    assert list(store._data) == ["e", "f", "g"]
    assert store.evictions == 4


def test_second_chance_when_every_entry_was_read_still_evicts_one() -> None:
    store = MemoryStore(4, 10**6, FakeClock())
    for k in "abcd":
        store.set(k, b"v", 60)
        store.get(k)
    store.set("e", b"v", 60)
    assert len(store) == 4
    assert store.get("e") == b"v"
    assert store.evictions == 1


def test_byte_bound_evicts_with_second_chance_and_stays_exact() -> None:
    store = MemoryStore(10_000, 5 * (1 + 100 + 96), FakeClock())
    for k in "abcde":
        store.set(k, b"x" * 100, 60)
    store.get("a")
    store.set("f", b"x" * 100, 60)
    assert store.get("a") == b"x" * 100
    assert store.get("b") is None
    assert store.nbytes == sum(len(k) + len(e[2]) + 96 for k, e in store._data.items())
    assert store.nbytes <= store.max_bytes


def test_overwrite_keeps_the_key_readable_and_the_bytes_exact() -> None:
    store = MemoryStore(3, 10**6, FakeClock())
    store.set("a", b"old", 60)
    store.set("b", b"v", 60)
    store.set("a", b"newer", 60)  # now the newest entry
    store.set("c", b"v", 60)
    store.set("d", b"v", 60)  # b is the oldest unreferenced entry
    assert (store.get("a"), store.get("b")) == (b"newer", None)
    assert store.nbytes == sum(len(k) + len(e[2]) + 96 for k, e in store._data.items())


def test_a_lookup_finding_an_expired_entry_drops_it() -> None:
    clock = FakeClock()
    store = MemoryStore(100, 10**6, clock)
    store.set("a", b"1", ttl=1)
    clock.advance(1)
    assert store.lookup("a") is None
    assert (len(store), store.nbytes, store.expirations) == (0, 0, 1)


class _Trap:
    """A clock that runs ``action`` once, the next time it is read while armed: it lets a
    test act between the moment a lock-free lookup read its entry and its checks."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.action: Callable[[], None] | None = None

    def __call__(self) -> float:
        action, self.action = self.action, None
        if action is not None:
            action()
        return self.now


def test_an_epoch_begun_while_a_lookup_runs_hides_the_entry_it_read() -> None:
    clock = _Trap()
    store = MemoryStore(100, 10**6, clock)
    store.set("a", b"1", 60)
    clock.action = store.new_epoch  # after lookup read the entry, before its epoch check
    assert store.lookup("a") is None
    store.set("a", b"2", 60)
    assert store.lookup("a") == (b"2", NO_VALUE)


def test_an_entry_replaced_while_a_lookup_expires_it_is_kept() -> None:
    clock = _Trap()
    store = MemoryStore(100, 10**6, clock)
    store.set("a", b"old", 1)
    clock.now += 1
    clock.action = lambda: store.set("a", b"new", 60)  # lands before the expired one is dropped
    assert store.lookup("a") is None
    assert store.lookup("a") == (b"new", NO_VALUE)
    assert store.nbytes == sum(len(k) + len(e[2]) + 96 for k, e in store._data.items())


def test_lock_free_readers_under_writers_evictions_and_epochs() -> None:
    """Readers never see an entry of an epoch that ended before their lookup began; writers
    see both bounds hold after every write; the byte count stays exact."""
    store = MemoryStore(50, 50 * 140, FakeClock())
    writes = threading.Lock()  # a writer's payload names the epoch its entry is written in
    stop = threading.Event()
    stale: list[tuple[int, int]] = []
    broken: list[str] = []
    keys = [f"k{i}" for i in range(120)]

    def writer(n: int) -> None:
        for i in range(3000):
            with writes:
                payload = str(store.epoch).encode() + b"." * (i % 40)
                store.set(keys[(n * 7 + i) % len(keys)], payload, 60)
                if len(store) > store.max_entries or store.nbytes > store.max_bytes:
                    broken.append(f"{len(store)} entries, {store.nbytes} bytes")
            if i % 11 == 0:
                store.delete([keys[i % len(keys)]])

    def epochs() -> None:
        while not stop.is_set():
            with writes:
                store.new_epoch()
            time.sleep(0.001)

    def reader(n: int) -> None:
        while not stop.is_set():
            for k in keys:
                began = store.epoch
                found = store.lookup(k)
                if found is not None and int(found[0].rstrip(b".")) < began:
                    stale.append((int(found[0].rstrip(b".")), began))

    side = [threading.Thread(target=epochs)] + [
        threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for t in side:
        t.start()
    try:
        assert hammer(writer, threads=4) == []
    finally:
        stop.set()
        for t in side:
            t.join()
    assert stale == []
    assert broken == []
    assert store.nbytes == sum(len(k) + len(e[2]) + 96 for k, e in store._data.items())
    assert len(store) <= 50


# -- decoded containers kept beside their payload: never aliased ---------------------------------
def _kept_of(svc: CacheService, key: str) -> object:
    found = svc._target.fallback.lookup(svc.full_key(key))
    assert found is not None
    return found[1]


def test_small_containers_are_kept_decoded_and_never_aliased() -> None:
    svc = CacheService(unique(), url=f"memory://{unique()}")
    given = {"id": 1, "name": "a", "tags": ["x", {"deep": [1, None]}], "b": b"\x00", "f": 1.5}
    svc.set("d", given)
    assert type(_kept_of(svc, "d")).__name__ == "Kept"  # the path under test is taken
    given["tags"][1]["deep"].append("mutated after set")  # type: ignore[index]
    given["id"] = 2
    first = svc.get("d")
    assert first == {"id": 1, "name": "a", "tags": ["x", {"deep": [1, None]}], "b": b"\x00",
                     "f": 1.5}
    second = svc.get("d")
    assert first is not second
    for a, b in ((first, second), (first["tags"], second["tags"]),
                 (first["tags"][1], second["tags"][1]),
                 (first["tags"][1]["deep"], second["tags"][1]["deep"])):
        assert a == b
        assert a is not b
    first["tags"][1]["deep"].append("mutated after get")
    first["tags"].append("more")
    first["new"] = 1
    assert svc.get("d") == second


def test_kept_lists_set_many_and_add_never_alias() -> None:
    svc = CacheService(unique(), url=f"memory://{unique()}")
    items = [1, "a", [2, 3]]
    svc.set("l", items)
    many = {"m1": {"a": [1]}, "m2": [{"b": 2}]}
    svc.set_many(many)
    added = {"c": [3]}
    assert svc.add("a1", added) is True
    items[2].append(4)  # type: ignore[attr-defined]
    many["m1"]["a"].append(2)
    many["m2"][0]["b"] = 0  # type: ignore[index]
    added["c"].append(4)
    got = svc.get_many(["l", "m1", "m2", "a1"])
    assert got == {"l": [1, "a", [2, 3]], "m1": {"a": [1]}, "m2": [{"b": 2}], "a1": {"c": [3]}}
    for key in got:
        assert type(_kept_of(svc, key)).__name__ == "Kept"
    svc.get("l")[2].append("x")
    svc.get("m1")["a"].append("x")
    svc.get("m2")[0]["b"] = "x"
    svc.get_many(["a1"])["a1"]["c"].append("x")
    assert svc.get_many(["l", "m1", "m2", "a1"]) == got


def test_only_values_of_immutable_leaves_up_to_the_size_bound_are_kept() -> None:
    svc = CacheService(unique(), url=f"memory://{unique()}")
    kept = {"flat": {"a": 1}, "int keys": {1: "a", 2: b"b"}, "empty": [], "nan": [float("nan")]}
    not_kept = {"tuple": {"a": (1, 2)}, "set": [{1}], "tuple key": {(1, 2): "a"},
                "datetime": [timedelta(1)], "big": {"s": "x" * 1024}, "top tuple": (1,)}
    for key, value in {**kept, **not_kept}.items():
        svc.set(key, value)
    for key in kept:
        assert type(_kept_of(svc, key)).__name__ == "Kept", key
    for key in not_kept:
        assert _kept_of(svc, key) is NO_VALUE, key
    for key, value in {**kept, **not_kept}.items():
        got = svc.get(key)
        assert type(got) is type(value), key
        assert got == value or key == "nan", key
    nan = svc.get("nan")
    assert type(nan[0]) is float
    assert nan[0] != nan[0]


def test_a_kept_stale_while_revalidate_envelope_is_unwrapped() -> None:
    clock = FakeClock()  # the store's clock and the services' wall clock
    svc = CacheService(unique(), url=f"memory://{unique()}", clock=clock, wall_clock=clock)
    assert svc.get_or_set("k", lambda: [1, 2], ttl=10, stale_while_revalidate=30) == [1, 2]
    assert type(_kept_of(svc, "k")).__name__ == "Kept"
    assert svc.get("k") == [1, 2]
    first = svc.get("k")
    first.append(3)
    assert svc.get("k") == [1, 2]
    clock.advance(20)  # past its freshness, within its stale window: a plain get misses
    assert svc.get("k") is None
    # what get_or_set's waiters see:
    found = svc._target.run(read.get(svc._ctx, "k", None, stale=True))
    assert (type(found).__name__, found.value) == ("Stale", [1, 2])
    assert svc.get_or_set("k", lambda: [9], ttl=10, stale_while_revalidate=30) == [9]
    assert svc.get("k") == [9]
