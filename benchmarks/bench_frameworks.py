"""Django ``cache.get`` through DjangoCache vs django-redis vs Django's RedisCache (issue 10).

**Up.** A hit of a small dict on one private redis-server, each backend built as Django
builds it from ``CACHES`` (default options), against raw redis-py ``GET`` + ``pickle.loads``
(what django-redis and Django's RedisCache store) and ``GET`` + ``orjson.loads``. Variants run
interleaved in rounds, one call timed at a time; a ratio is the median over rounds of
(variant median / raw GET+pickle median). Process and server share one CPU (as bench_core).
A second table does the same for a value JSON cannot hold (an object), which DjangoCache
stores as HMAC-signed pickle.

**Down.** p50/p99 per call with Redis refused (a port nobody listens on) and hung (a
SIGSTOPped server): DjangoCache (default options: 0.25 s timeouts, breaker);
django-redis with ``IGNORE_EXCEPTIONS=True`` and 0.25 s socket/connect timeouts (its defaults
have none: a hung server would block forever); Django's RedisCache with the same timeouts
(it raises; the time to raise is measured). Peers facing a hung server run a few calls only.

Targets: DjangoCache hit <= 1.10x raw GET+decode; p99 <= 0.1 ms refused and hung.

Run: ``.venv/bin/python -m benchmarks.bench_frameworks [--quick] [--no-write]``; writes
benchmarks/results/frameworks.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

VALUE = {"id": 12345, "name": "Alice Example", "email": "alice@example.com", "active": True,
         "roles": ["admin", "staff"], "score": 98.5}


class Profile:
    """A value JSON cannot hold exactly: pickled by every backend."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.name = "Alice Example"
        self.tags = ("a", "b")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash(self.user_id)


def _setup_django() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(SECRET_KEY="bench-frameworks-secret-key", USE_TZ=True, CACHES={})
    import django

    django.setup()


def _ours(url: str, prefix: str) -> Any:
    from cache_service.integrations.django import DjangoCache

    return DjangoCache(url, {"KEY_PREFIX": prefix, "OPTIONS": {"fallback": "process"}})


def _django_redis(url: str, timeouts: bool = False) -> Any:
    from django_redis.cache import RedisCache

    options: dict[str, Any] = {"IGNORE_EXCEPTIONS": True}
    if timeouts:
        options.update(SOCKET_TIMEOUT=0.25, SOCKET_CONNECT_TIMEOUT=0.25)
    return RedisCache(url, {"OPTIONS": options})


def _django_builtin(url: str, timeouts: bool = False) -> Any:
    from django.core.cache.backends.redis import RedisCache

    options = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25} if timeouts else {}
    return RedisCache(url, {"OPTIONS": options})


def _time_calls(fn: Callable[[], Any], n: int) -> list[float]:
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        t0 = clock()
        fn()
        out.append((clock() - t0) / 1000)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _hits(url: str, value: Any, rounds: int, calls: int) -> list[tuple[str, float, float, float]]:
    import redis

    raw = redis.Redis.from_url(url)
    ours = _ours(url, "bench")
    peer_dr = _django_redis(url)
    peer_dj = _django_builtin(url)
    for cache in (ours, peer_dr, peer_dj):
        cache.set("k", value, timeout=None)
        assert cache.get("k") == value
    raw.set("raw-pickle", pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    json_ok = isinstance(value, dict)
    if json_ok:
        raw.set("raw-json", orjson.dumps(value))
    variants: dict[str, Callable[[], Any]] = {
        "raw redis-py GET + pickle.loads": lambda: pickle.loads(raw.get("raw-pickle")),
    }
    if json_ok:
        variants["raw redis-py GET + orjson.loads"] = lambda: orjson.loads(raw.get("raw-json"))
    variants.update({
        "DjangoCache (cache_service)": lambda: ours.get("k"),
        "django-redis RedisCache": lambda: peer_dr.get("k"),
        "Django RedisCache (built-in)": lambda: peer_dj.get("k"),
    })
    names = list(variants)
    samples: dict[str, list[float]] = {n: [] for n in names}
    medians: dict[str, list[float]] = {n: [] for n in names}
    for fn in variants.values():
        _time_calls(fn, 200)  # warm-up
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t = _time_calls(variants[name], calls)
            samples[name].extend(t)
            medians[name].append(statistics.median(t))
    base = medians[names[0]]
    rows = []
    for name in names:
        ratio = statistics.median(m / b for m, b in zip(medians[name], base, strict=True))
        rows.append((name, statistics.median(samples[name]), _pct(samples[name], 0.99), ratio))
    return rows


def _down(url: str, label: str, n_ours: int, n_peer: int) -> list[tuple[str, str, float, float,
                                                                      int, str]]:
    rows = []
    ours = _ours(url, f"bench-{label}")
    ours.get("warm-up")  # the first failure opens the breaker (a hung server: one timeout)
    t = _time_calls(lambda: ours.get("k"), n_ours)
    rows.append((label, "DjangoCache (cache_service)", _pct(t, 0.5), _pct(t, 0.99), n_ours,
                 "miss from the memory fallback"))
    dr = _django_redis(url, timeouts=True)
    t = _time_calls(lambda: dr.get("k"), n_peer)
    rows.append((label, "django-redis IGNORE_EXCEPTIONS", _pct(t, 0.5), _pct(t, 0.99), n_peer,
                 "miss after the error"))
    dj = _django_builtin(url, timeouts=True)

    def builtin() -> None:
        with contextlib.suppress(Exception):  # it raises: the time to raise is what a view waits
            dj.get("k")

    t = _time_calls(builtin, min(n_peer, 5))
    rows.append((label, "Django RedisCache (built-in)", _pct(t, 0.5), _pct(t, 0.99),
                 min(n_peer, 5), "raises"))
    return rows


def _pin(server: Any) -> str:
    if not hasattr(os, "sched_setaffinity") or server.pid is None:
        return "not pinned"
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    os.sched_setaffinity(server.pid, {cpu})
    return f"process and redis-server pinned to CPU {cpu}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rounds, calls = (4, 200) if args.quick else (30, 500)
    _setup_django()
    from tests.servers import RedisServer

    out: list[str] = [
        f"bench_frameworks ({'quick' if args.quick else 'full'}) - Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs",
    ]
    with RedisServer(name="bench-frameworks") as server, \
            RedisServer(name="bench-frameworks-hung") as hung:
        out.append(_pin(server))
        for title, value in (("small dict (pickled by the peers; JSON for DjangoCache)", VALUE),
                             ("an object (pickled by all; signed pickle for DjangoCache)",
                              Profile(7))):
            rows = _hits(server.url, value, rounds, calls)
            out += ["", f"Django cache.get hit, {title}",
                    f"  {'variant':<36}{'median µs':>11}{'p99 µs':>10}{'ratio':>9}"]
            out += [f"  {n:<36}{m:>11.2f}{p:>10.1f}{r:>8.3f}x" for n, m, p, r in rows]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            refused = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
        hung.freeze()
        try:
            down = _down(refused, "refused", 5000 if not args.quick else 500, 200)
            down += _down(hung.url, "hung", 5000 if not args.quick else 500, 3)
        finally:
            hung.thaw()
    out += ["", "Django cache.get with Redis down (per call)",
            f"  {'redis':<9}{'backend':<32}{'p50 ms':>10}{'p99 ms':>10}{'calls':>7}  outcome"]
    out += [f"  {lab:<9}{n:<32}{p50 / 1000:>10.3f}{p99 / 1000:>10.3f}{c:>7}  {o}"
            for lab, n, p50, p99, c, o in down]
    text = "\n".join(out) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "frameworks.txt").write_text(text)


if __name__ == "__main__":
    main()
