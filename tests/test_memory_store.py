"""The bounded LRU+TTL store, with an injected clock (no sleeping)."""

from __future__ import annotations

from cache_service import CacheService
from cache_service.keys import glob_to_regex
from cache_service.memory import MemoryStore

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
    assert store.delete_matching(glob_to_regex("u:?")) == 2
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
                store.delete_matching(glob_to_regex(f"{n}:1*"))

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
