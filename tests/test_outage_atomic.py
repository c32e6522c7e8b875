"""Read-check-write operations stay atomic while Redis is out: ``add`` (and the django-redis
``lock()`` and ``set(..., nx=True)`` built on it) and ``incr``, hammered at once by real worker
processes of one host (the host-shared fallback store) and by threads of one process (either
fallback store). What these tests make impossible: two workers both winning one ``add``, a
lock held by two holders at once, a rate-limit counter losing increments during an outage.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import pytest

from cache_service import CacheService

from .helpers import hammer, unique

PROCESSES, THREADS = 3, 3
# Long backoffs: no probe of the dead port is due while a round runs (a probe would only fail).
OUTAGE = {"breaker_min_backoff": 30.0, "breaker_max_backoff": 60.0,
          "socket_timeout": 0.2, "connect_timeout": 0.2}


@pytest.fixture
def unreachable_redis(unreachable_redis: str) -> str:
    """The session's refused URL under a user name of this test's own: a location (and so a
    target) no earlier test of this process made with other options (say another state_dir,
    whose fallback rows the worker processes would not see)."""
    return unreachable_redis.replace("redis://", f"redis://{unique('atomic')}@", 1)


def _own_target(url: str, fallback: str) -> str:
    """``url`` itself, or for the per-process store another database of it: a target keeps
    the options of the first service naming its location."""
    return url if fallback == "host" else url.rsplit("/", 1)[0] + "/1"


def _service(url: str, prefix: str, fallback: str = "host") -> CacheService:
    """A service on the refused ``url``, already on its fallback store."""
    svc = CacheService(prefix, url=_own_target(url, fallback), fallback=fallback, **OUTAGE)
    svc.get("opens-the-breaker")
    target = svc.stats()["target"]
    assert (target["backend"], target["fallback"]) == ("memory", fallback)
    return svc


def _django_cache(url: str, prefix: str, fallback: str = "host") -> Any:
    from django.conf import settings

    if not settings.configured:
        settings.configure(SECRET_KEY="atomic-outage-tests-0123456789-abcdefghij",
                           USE_TZ=True, CACHES={})
    from cache_service.integrations.django import DjangoCache

    options = {"SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2, "fallback": fallback,
               "breaker_min_backoff": 30.0, "breaker_max_backoff": 60.0}
    return DjangoCache(_own_target(url, fallback),
                       {"KEY_PREFIX": prefix, "TIMEOUT": 60, "OPTIONS": options})


# -- what each thread of a worker process does (module level: spawned children import it) ----
def _adds(svc: CacheService, rounds: int, barrier: Any, me: str) -> list[int]:
    """One ``add`` per round, every thread of every process on the same key at once."""
    won = []
    for n in range(rounds):
        barrier.wait()
        if svc.add(f"round:{n}", me, ttl=60):
            won.append(n)
    return won


def _nx_sets(cache: Any, rounds: int, barrier: Any, me: str) -> list[int]:
    """The django-redis ``set(..., nx=True)`` of each round (as ``add``)."""
    won = []
    for n in range(rounds):
        barrier.wait()
        if cache.set(f"nx:{n}", me, timeout=60, nx=True):
            won.append(n)
    return won


def _incrs(svc: CacheService, rounds: int, barrier: Any, me: str) -> int:
    """``rounds`` increments of 1 to 3 on one counter; their sum."""
    barrier.wait()
    total = 0
    for n in range(rounds):
        delta = 1 + (n + len(me)) % 3
        svc.incr("hits", delta, ttl=600)
        total += delta
    return total


def _locks(cache: Any, rounds: int, barrier: Any, me: str, inside: Any) -> int:
    """Take and release the django-redis lock ``rounds`` times; inside it, count the holders
    (``inside``: shared by every process). Returns the times another holder was seen."""
    overlaps = 0
    barrier.wait()
    for _ in range(rounds):
        lock = cache.lock("the-lock", timeout=30, sleep=0.001, blocking_timeout=60)
        assert lock.acquire()
        with inside.get_lock():
            inside.value += 1
            overlaps += inside.value != 1
        time.sleep(0.0005)
        with inside.get_lock():
            inside.value -= 1
        lock.release()
    return overlaps


def _worker(job: tuple[str, str, str, int], barrier: Any, inside: Any, out: Any) -> None:
    """One worker process: ``THREADS`` threads doing ``kind``; puts each thread's result."""
    kind, url, prefix, rounds = job
    try:
        handle: Any = (_django_cache(url, prefix) if kind in ("lock", "nx")
                       else _service(url, prefix))
        if kind in ("lock", "nx"):
            handle.get("opens-the-breaker")
        results: list[Any] = [None] * THREADS

        def run(n: int) -> None:
            me = f"{multiprocessing.current_process().pid}/{n}"
            if kind == "add":
                results[n] = _adds(handle, rounds, barrier, me)
            elif kind == "nx":
                results[n] = _nx_sets(handle, rounds, barrier, me)
            elif kind == "incr":
                results[n] = _incrs(handle, rounds, barrier, me)
            else:
                results[n] = _locks(handle, rounds, barrier, me, inside)

        errors = hammer(run, THREADS)
        out.put(("error", repr(errors[0])) if errors else ("ok", results))
    except BaseException as exc:  # reported to the test instead of a silent exit
        out.put(("error", repr(exc)))


def _across_processes(kind: str, url: str, prefix: str, rounds: int) -> list[Any]:
    """Run ``_worker(kind)`` in ``PROCESSES`` spawned processes; every thread's result."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    barrier = ctx.Barrier(PROCESSES * THREADS, timeout=120)
    inside = ctx.Value("i", 0)
    procs = [ctx.Process(target=_worker, args=((kind, url, prefix, rounds), barrier, inside, out))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    try:
        replies = [out.get(timeout=180) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [detail for status, detail in replies if status != "ok"]
    assert not errors, errors
    return [result for _, results in replies for result in results]


def _exactly_one_winner(won: list[list[int]], rounds: int) -> None:
    every = sorted(n for per_thread in won for n in per_thread)
    assert every == list(range(rounds)), "some round had no winner or more than one"


# -- across the processes of a host (the host-shared fallback store) -------------------------
@pytest.mark.slow
def test_add_has_one_winner_per_round_across_processes(unreachable_redis: str) -> None:
    prefix, rounds = unique(), 50
    won = _across_processes("add", unreachable_redis, prefix, rounds)
    _exactly_one_winner(won, rounds)
    svc = _service(unreachable_redis, prefix)
    assert all(svc.get(f"round:{n}") is not None for n in range(rounds))


@pytest.mark.slow
def test_incr_loses_no_increment_across_processes(unreachable_redis: str) -> None:
    prefix, rounds = unique(), 150
    sums = _across_processes("incr", unreachable_redis, prefix, rounds)
    assert _service(unreachable_redis, prefix).get("hits") == sum(sums)


@pytest.mark.slow
def test_django_lock_is_never_held_twice_across_processes(unreachable_redis: str) -> None:
    pytest.importorskip("django")
    prefix, rounds = unique(), 25
    overlaps = _across_processes("lock", unreachable_redis, prefix, rounds)
    assert overlaps == [0] * (PROCESSES * THREADS)
    assert not _django_cache(unreachable_redis, prefix).lock("the-lock").locked()


@pytest.mark.slow
def test_django_set_nx_has_one_winner_per_round_across_processes(
        unreachable_redis: str) -> None:
    pytest.importorskip("django")
    prefix, rounds = unique(), 40
    _exactly_one_winner(_across_processes("nx", unreachable_redis, prefix, rounds), rounds)


# -- threads of one process (either fallback store) -------------------------------------------
THREADED = 8


@pytest.mark.parametrize("fallback", ["host", "process"])
def test_add_and_incr_are_atomic_among_threads(unreachable_redis: str, fallback: str) -> None:
    svc = _service(unreachable_redis, unique(), fallback)
    rounds, increments = 40, 100
    barrier = threading.Barrier(THREADED, timeout=60)
    won: list[list[int]] = [[] for _ in range(THREADED)]
    sums = [0] * THREADED

    def run(n: int) -> None:
        won[n] = _adds(svc, rounds, barrier, str(n))
        sums[n] = _incrs(svc, increments, barrier, str(n))

    assert hammer(run, THREADED) == []
    _exactly_one_winner(won, rounds)
    assert svc.get("hits") == sum(sums)


@pytest.mark.parametrize("fallback", ["host", "process"])
def test_django_lock_is_never_held_twice_among_threads(unreachable_redis: str,
                                                       fallback: str) -> None:
    pytest.importorskip("django")
    cache = _django_cache(unreachable_redis, unique(), fallback)
    cache.get("opens-the-breaker")
    inside = multiprocessing.get_context("spawn").Value("i", 0)
    barrier = threading.Barrier(THREADED, timeout=60)
    overlaps = [0] * THREADED

    def run(n: int) -> None:
        overlaps[n] = _locks(cache, 15, barrier, str(n), inside)

    assert hammer(run, THREADED) == []
    assert overlaps == [0] * THREADED

