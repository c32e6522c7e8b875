"""Django's async cache API: ``await cache.aget(key)`` on DjangoCache vs Django's own
``RedisCache`` and django-redis, against ``AsyncCacheService.get`` (issue 20, item 1).

DjangoCache's ``a*`` methods await ``AsyncCacheService`` (redis.asyncio) in the caller's event
loop. Django's ``RedisCache`` and django-redis have no async code: ``BaseCache.aget`` is
``sync_to_async(self.get)``, a hop to asgiref's one thread-sensitive worker thread and back
per call, which is also what runs under an ASGI server (uvicorn, daphne). One private
redis-server; every backend reads a small dict it stored itself (default options, as Django
builds them from ``CACHES``). "1 task": one task awaiting hits back to back; "100 tasks": 100
concurrent tasks sharing the cache, wall time / hits. Many short rounds in a shuffled order;
a ratio is the median over rounds of (variant / ``AsyncCacheService.get`` in the same round),
so load from other processes hits both sides alike.

Targets: DjangoCache ``aget`` <= 1.1x ``AsyncCacheService.get``; Django's ``RedisCache.aget``
>= 3x DjangoCache ``aget``.

Run: ``.venv/bin/python -m benchmarks.bench_django_async [--quick] [--uvloop]``
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_STATE = tempfile.mkdtemp(prefix="bench-django-async-")  # the host state of this run only
atexit.register(shutil.rmtree, _STATE, True)
os.environ.setdefault("CACHE_SERVICE_DIR", _STATE)

from tests.servers import RedisServer  # noqa: E402

VALUE = {"id": 123, "name": "John Doe", "email": "john@example.com", "roles": ["admin", "dev"],
         "active": True, "score": 97.5, "tags": {"team": "core", "tz": "UTC"}}
SECRET = "bench-django-async-secret-key-0123456789abcdef"
BASE = "AsyncCacheService.get"
OURS = "DjangoCache.aget"
DJANGO = "Django RedisCache.aget"
DJANGO_REDIS = "django-redis aget"
BASE_WIRE = "AsyncCacheService.get, wire"
OURS_WIRE = "DjangoCache.aget, wire"
Getter = Callable[[], Awaitable[Any]]
# A loaded machine can delay a connect past the 0.25 s default and open the breaker: the bench
# measures hits on Redis, so our services wait longer, and a run that used the fallback says so
PATIENT = {"socket_timeout": 2.0, "connect_timeout": 2.0}
SERVICES: list[Any] = []


def _caches(url: str) -> dict[str, Any]:
    from django.conf import settings

    caches = {
        "ours": {"BACKEND": "cache_service.integrations.django.DjangoCache", "LOCATION": url,
                 "KEY_PREFIX": "ours", "OPTIONS": PATIENT},
        # our own connection layer (issue 18), on db 1: a target of its own
        "wire": {"BACKEND": "cache_service.integrations.django.DjangoCache",
                 "LOCATION": url[:-1] + "1", "KEY_PREFIX": "ours",
                 "OPTIONS": {"connection": "wire", **PATIENT}},
        "django": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                   "KEY_PREFIX": "django"},
        "django_redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url,
                         "KEY_PREFIX": "dr"},
    }
    settings.configure(SECRET_KEY=SECRET, USE_TZ=True, CACHES=caches)
    import django
    from django.core.cache import caches as handler

    django.setup()
    return {name: handler[name] for name in caches}


async def setup(url: str) -> dict[str, Getter]:
    """One getter per variant, each reading a value it stored itself."""
    from cache_service.aio import AsyncCacheService
    from cache_service.codec import PickleCodec
    from cache_service.integrations._common import derive_key

    caches = _caches(url)
    # the service as DjangoCache builds it: PickleCodec signed with a key derived from
    # SECRET_KEY (this dict is stored as JSON by it), the same made key
    codec = PickleCodec(signing_key=derive_key(SECRET, "django-cache"))
    getters: dict[str, Getter] = {}
    for (name, twin), (alias, where, options) in zip(
            ((BASE, OURS), (BASE_WIRE, OURS_WIRE)),
            (("ours", url, PATIENT), ("wire", url[:-1] + "1", {"connection": "wire", **PATIENT})),
            strict=True):
        base = AsyncCacheService("django:ours", url=where, codec=codec, **options)
        await base.set("ours:1:k", VALUE, ttl=600)
        getters[name] = lambda base=base: base.get("ours:1:k")
        SERVICES.append(base)
        ours = caches[alias]
        assert await ours.aget("k") == VALUE  # the same key, written by ``base``
        getters[twin] = lambda ours=ours: ours.aget("k")
    for name, alias in ((DJANGO, "django"), (DJANGO_REDIS, "django_redis")):
        cache = caches[alias]
        await cache.aset("k", VALUE, timeout=600)
        assert await cache.aget("k") == VALUE
        getters[name] = lambda cache=cache: cache.aget("k")
    return getters


async def one_task(get: Getter, ops: int) -> float:
    """Seconds per hit, one task."""
    start = time.perf_counter()
    for _ in range(ops):
        await get()
    return (time.perf_counter() - start) / ops


async def many_tasks(get: Getter, ops: int, tasks: int = 100) -> float:
    """Seconds per hit (wall time / hits), ``tasks`` tasks at once."""
    per_task = max(1, ops // tasks)

    async def worker() -> None:
        for _ in range(per_task):
            await get()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return (time.perf_counter() - start) / (per_task * tasks)


async def main(rounds: int, ops: int) -> None:
    with RedisServer(name="bench-django-async") as server:
        getters = await setup(server.url)
        modes = {"1 task": one_task, "100 tasks": many_tasks}
        results: dict[str, dict[str, list[float]]] = {mode: {} for mode in modes}
        for get in getters.values():  # warm up: connections, the worker thread, code paths
            await one_task(get, 200)
            await many_tasks(get, 1000)
        order = list(getters)
        for _ in range(rounds):
            for mode, bench in modes.items():
                random.shuffle(order)
                for name in order:
                    gc.collect()
                    results[mode].setdefault(name, []).append(await bench(getters[name], ops))
        opened = 0
        for service in SERVICES:
            opened += (await service.stats())["target"]["breaker_opened"]
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    if opened:
        print(f"WARNING: the breaker opened {opened} times (Redis too slow to answer): some "
              "hits came from the fallback; these figures are not Redis hits")
    print(f"Django async cache hit ({rounds} rounds x {ops} hits, loop: {loop}, "
          f"Python {sys.version.split()[0]})")
    for mode, table in results.items():
        base = table[BASE]
        print(f"\n  {mode:<26}{'us/hit':>10}{'vs ' + BASE:>30}")
        for name in getters:
            ratio = statistics.median(t / b for t, b in zip(table[name], base, strict=True))
            print(f"  {name:<26}{statistics.median(table[name]) * 1e6:>10.1f}{ratio:>29.2f}x")
        for mine, twin in ((OURS, BASE), (OURS_WIRE, BASE_WIRE)):
            ours = table[mine]
            for peer in (DJANGO, DJANGO_REDIS):
                faster = statistics.median(p / o for p, o in zip(table[peer], ours, strict=True))
                print(f"  {mine} is {faster:.1f}x faster than {peer}")
            ratio = statistics.median(o / b for o, b in zip(ours, table[twin], strict=True))
            speedup = statistics.median(p / o for p, o in zip(table[DJANGO], ours, strict=True))
            print(f"  targets for {mine}: <= 1.10x {twin}: {ratio:.2f}x "
                  f"[{'met' if ratio <= 1.10 else 'MISSED'}]; >= 3x faster than {DJANGO}: "
                  f"{speedup:.1f}x [{'met' if speedup >= 3 else 'MISSED'}]")


async def hits_only(name: str, n: int) -> None:
    """``n`` hits of one variant and nothing else, to count instructions under callgrind
    (``--count``): the difference between two ``n`` is the cost of the extra hits."""
    with RedisServer(name="bench-django-async") as server:
        getters = await setup(server.url)
        get = getters[name]
        for _ in range(n):
            await get()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--ops", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="8 rounds of 200 hits")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--count", nargs=2, metavar=("VARIANT", "N"),
                        help="only N hits of VARIANT (for valgrind --tool=callgrind)")
    args = parser.parse_args()
    rounds, ops = (8, 200) if args.quick else (args.rounds, args.ops)
    if args.count:
        asyncio.run(hits_only(args.count[0], int(args.count[1])))
    elif args.uvloop:
        import uvloop

        uvloop.run(main(rounds, ops))
    else:
        asyncio.run(main(rounds, ops))
