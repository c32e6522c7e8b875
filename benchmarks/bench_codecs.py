"""Values as stored (issue 19): bytes and µs per set/get for each serializer x compressor
(x encryption), against raw redis-py + orjson, raw redis-py + the same compression library or
msgpack, and django-redis with its zlib and zstd compressors.

Documents: a ~2 KB and a ~50 KB JSON API response, a ~500 KB JSON document and a ~40 KB HTML
fragment (as a str), made here from a seeded Random so every run stores the same bytes. For
each: the payload's bytes (STRLEN) and Redis' ``MEMORY USAGE`` of the key, then get and set
timed call by call, all variants of one comparison interleaved by round on one private
``redis-server`` (pinned with this process to one CPU, as in bench_core). django-redis is
measured as a Django cache (``django_redis.cache.RedisCache``, its JSON serializer, its zlib
and zstd compressors; the zstd one needs ``pyzstd``, in the bench extra) when it imports.

Targets: zstd on the 50 KB response stores <= 0.3x the bytes at <= 1.3x the raw get time of
the uncompressed value; msgpack get/set within 1.1x of JSON for a small dict; encryption
adds <= 10 µs to a 1 KB get.

Run: ``scripts/bench bench_codecs [--quick] [--rounds N]``; writes benchmarks/results/codecs.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

import lz4.frame
import msgpack
import orjson
import redis
import zstandard
from tests.servers import RedisServer

from benchmarks.bench_core import (
    LARGE,
    RESULTS,
    SMALL,
    Comparison,
    Variant,
    p99,
    pin,
    ratio,
    run_per_call,
)
from cache_service import CacheService

TTL = 3 * 3600  # longer than a full run: an expired key would time a miss
KEY = secrets.token_hex(32)
PIPELINES: list[tuple[str, dict[str, Any]]] = [
    (f"{ser}{'+' + comp if comp else ''}{'+aes' if aes else ''}",
     {"serializer": ser, **({"compression": comp} if comp else {}),
      **({"encryption_keys": [KEY]} if aes else {})})
    for ser in ("json", "msgpack") for comp in (None, "zstd", "lz4", "zlib")
    for aes in (False, True)
]


def api_response(rng: random.Random, items: int) -> dict[str, Any]:
    """A JSON API response: a page of records with repeated keys and varied values."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]
    return {
        "page": 1, "per_page": items, "total": items * 17,
        "results": [{
            "id": 100_000 + i, "sku": f"SKU-{rng.randrange(10**6):06d}",
            "name": " ".join(rng.choices(words, k=3)).title(),
            "price": round(rng.uniform(1, 500), 2), "in_stock": rng.random() < 0.8,
            "tags": rng.sample(words, 3), "rating": round(rng.uniform(1, 5), 1),
            "updated": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z",
            "description": " ".join(rng.choices(words, k=rng.randint(8, 20))),
        } for i in range(items)],
    }


def html_fragment(rng: random.Random, rows: int) -> str:
    """A rendered HTML table, as a template engine would cache it."""
    cells = "".join(
        f'<tr class="row-{i % 2}"><td><a href="/products/{100_000 + i}">Product '
        f'{rng.randrange(10**5)}</a></td><td class="price">${rng.uniform(1, 500):.2f}</td>'
        f'<td><span class="badge badge-{rng.choice(["ok", "low", "out"])}">'
        f'{rng.randint(0, 99)} left</span></td></tr>\n' for i in range(rows))
    return f'<div class="catalog"><table class="table">\n{cells}</table></div>'


def documents() -> list[tuple[str, Any]]:
    rng = random.Random(19)
    return [("2 KB JSON", api_response(rng, 6)), ("50 KB JSON", api_response(rng, 160)),
            ("500 KB JSON", api_response(rng, 1600)), ("HTML fragment", html_fragment(rng, 260))]


def django_redis_caches(url: str) -> dict[str, Any]:
    """django-redis caches (its JSON serializer) with its zlib and zstd compressors, each if
    it imports (its zstd compressor needs ``pyzstd``, in the bench extra)."""
    try:
        from django.conf import settings

        if not settings.configured:
            settings.configure()
        from django_redis.cache import RedisCache
    except ImportError:
        return {}
    found: dict[str, Any] = {}
    for name, module, cls in (("zlib", "zlib", "ZlibCompressor"),
                              ("zstd", "zstd", "ZStdCompressor")):
        try:
            __import__(f"django_redis.compressors.{module}", fromlist=[cls])
        except ImportError:
            continue
        found[f"django-redis json+{name}"] = RedisCache(url, {
            "TIMEOUT": TTL, "KEY_PREFIX": f"django-redis-{name}", "OPTIONS": {
            "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
            "COMPRESSOR": f"django_redis.compressors.{module}.{cls}"}})
    return found


Codec = tuple[str, Callable[[Any], bytes], Callable[[bytes], Any]]


def raw_codecs() -> list[Codec]:
    """The baselines: raw redis-py + orjson, + each compression library, + msgpack."""
    loads, dumps = orjson.loads, orjson.dumps
    zc, zd = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    return [
        ("raw redis-py + orjson", dumps, loads),
        ("raw redis-py + orjson + zstd", lambda v: zc.compress(dumps(v)),
         lambda b: loads(zd.decompress(b))),
        ("raw redis-py + orjson + lz4", lambda v: lz4.frame.compress(dumps(v)),
         lambda b: loads(lz4.frame.decompress(b))),
        ("raw redis-py + orjson + zlib", lambda v: zlib.compress(dumps(v)),
         lambda b: loads(zlib.decompress(b))),
        ("raw redis-py + msgpack", msgpack.packb, msgpack.unpackb),
    ]


def document_rows(raw: redis.Redis, services: dict[str, CacheService], peers: dict[str, Any],
                  doc_name: str, doc: Any) -> tuple[list[str], list[Comparison], dict[str, int]]:
    """One document stored every way: size lines, its get and set comparisons, bytes by
    variant."""
    px = TTL * 1000
    sizes: list[str] = []
    stored_bytes: dict[str, int] = {}
    gets: list[Variant] = []
    sets: list[Variant] = []
    raw_bytes = 0
    for name, encode, decode in raw_codecs():
        rk = f"raw:{doc_name}:{name}"
        raw.set(rk, encode(doc), px=px)
        stored = raw.get(rk)
        assert isinstance(stored, bytes)
        assert decode(stored) == doc
        raw_bytes = raw_bytes or len(stored)
        stored_bytes[name] = len(stored)
        sizes.append(f"{doc_name:<15} {name:<38} {len(stored):>7} "
                     f"{len(stored) / raw_bytes:5.2f}x {raw.memory_usage(rk):>12}")
        gets.append(Variant(name, lambda rk=rk, d=decode: d(raw.get(rk))))
        sets.append(Variant(name, lambda rk=rk, e=encode, v=doc: raw.set(rk, e(v), px=px)))
    for name, cache in peers.items():
        cache.set(doc_name, doc)
        assert cache.get(doc_name) == doc
        pk = str(cache.make_key(doc_name))
        stored = raw.get(pk)
        assert isinstance(stored, bytes)
        stored_bytes[name] = len(stored)
        sizes.append(f"{doc_name:<15} {name:<38} {len(stored):>7} "
                     f"{len(stored) / raw_bytes:5.2f}x {raw.memory_usage(pk):>12}")
        gets.append(Variant(name, lambda c=cache, k=doc_name: c.get(k)))
        sets.append(Variant(name, lambda c=cache, k=doc_name, v=doc: c.set(k, v)))
    for name, svc in services.items():
        svc.set(doc_name, doc)
        assert svc.get(doc_name) == doc
        stored = raw.get(svc.full_key(doc_name))
        assert isinstance(stored, bytes)
        stored_bytes[f"CacheService {name}"] = len(stored)
        sizes.append(f"{doc_name:<15} {'CacheService ' + name:<38} {len(stored):>7} "
                     f"{len(stored) / raw_bytes:5.2f}x "
                     f"{raw.memory_usage(svc.full_key(doc_name)):>12}")
        gets.append(Variant(f"CacheService {name}", lambda s=svc, k=doc_name: s.get(k)))
        sets.append(Variant(f"CacheService {name}",
                            lambda s=svc, k=doc_name, v=doc: s.set(k, v)))
    sizes.append("")
    return sizes, [Comparison(f"get, {doc_name}", gets, per_call=True),
                   Comparison(f"set, {doc_name}", sets, per_call=True)], stored_bytes


def small_rows(services: dict[str, CacheService]) -> list[Comparison]:
    """msgpack vs JSON on a small dict; encryption's cost on a ~1 KB get."""
    small = [(n, services[n]) for n in ("json", "msgpack")]
    for _, svc in small:
        svc.set("small", SMALL)
    for name in ("json", "json+aes"):
        services[name].set("large", LARGE)
    return [
        Comparison("get, small dict", [Variant(f"CacheService {n}", lambda s=s: s.get("small"))
                                       for n, s in small], per_call=True),
        Comparison("set, small dict", [Variant(f"CacheService {n}",
                                               lambda s=s: s.set("small", SMALL))
                                       for n, s in small], per_call=True),
        Comparison(f"get, ~1 KB dict ({len(orjson.dumps(LARGE))} B of JSON)",
                   [Variant(f"CacheService {n}", lambda s=services[n]: s.get("large"))
                    for n in ("json", "json+aes")], per_call=True),
    ]


def targets(comparisons: list[Comparison], bytes50: dict[str, int]) -> list[str]:
    """PASS/FAIL against the issue's targets."""
    def cmp_of(title: str) -> Comparison:
        return next(c for c in comparisons if c.title.startswith(title))

    lines = []
    get50 = cmp_of("get, 50 KB")
    ours = next(v for v in get50.variants if v.name == "CacheService json+zstd")
    r_bytes = bytes50["CacheService json+zstd"] / bytes50["raw redis-py + orjson"]
    r_get = ratio(ours, get50.variants[0])
    lines.append(f"  {'PASS' if r_bytes <= 0.3 else 'FAIL'}  zstd, 50 KB response: stores "
                 f"{r_bytes:.2f}x the bytes (target <= 0.30x)")
    lines.append(f"  {'PASS' if r_get <= 1.3 else 'FAIL'}  zstd, 50 KB response: get "
                 f"{r_get:.2f}x raw redis-py + orjson of the uncompressed value "
                 "(target <= 1.30x)")
    for what in ("get", "set"):
        cmp = cmp_of(f"{what}, small dict")
        r = ratio(cmp.variants[1], cmp.variants[0])
        lines.append(f"  {'PASS' if r <= 1.1 else 'FAIL'}  msgpack {what}, small dict: "
                     f"{r:.3f}x JSON (target <= 1.10x)")
    cmp = cmp_of("get, ~1 KB")
    added = statistics.median(a - b for a, b in zip(cmp.variants[1].rounds,
                                                    cmp.variants[0].rounds, strict=True))
    lines.append(f"  {'PASS' if added <= 10 else 'FAIL'}  encryption on a ~1 KB get: "
                 f"+{added:.1f} µs (target <= 10 µs)")
    return lines


def measure(server: RedisServer, rounds: int, quick: bool
            ) -> tuple[list[str], list[Comparison], list[str]]:
    """The bytes table, the timed comparisons and the verdict lines."""
    raw = redis.Redis(host=server.host, port=server.port, db=0)
    peers = django_redis_caches(server.url)
    services = {name: CacheService(f"bench-codecs-{i}", url=server.url, default_ttl=TTL,
                                   max_value_bytes=8 << 20, **options)
                for i, (name, options) in enumerate(PIPELINES)}
    sizes = [f"{'document':<15} {'stored as':<38} {'bytes':>7} {'ratio':>6} {'MEMORY USAGE':>12}"]
    comparisons: list[Comparison] = []
    bytes50: dict[str, int] = {}
    for doc_name, doc in documents():
        lines, cmps, stored = document_rows(raw, services, peers, doc_name, doc)
        sizes += lines
        comparisons += cmps
        if doc_name.startswith("50 KB"):
            bytes50 = stored
    comparisons += small_rows(services)
    for cmp in comparisons:
        size = cmp.title.split(", ", 1)[1]
        calls = 30 if "500 KB" in size else 150 if "50 KB" in size or "HTML" in size else 400
        run_per_call(cmp, rounds, calls // (3 if quick else 1))
        print(f"  measured: {cmp.title}", file=sys.stderr)
    raw.close()
    for cache in peers.values():
        cache.close()
    for svc in services.values():
        svc.close()
    return sizes, comparisons, targets(comparisons, bytes50)


def render(comparisons: list[Comparison]) -> list[str]:
    lines = []
    for cmp in comparisons:
        base = cmp.variants[0]
        lines += [cmp.title, f"  {'variant':<44} {'median µs':>10} {'p99 µs':>9} {'ratio':>7}"]
        for v in cmp.variants:
            rel = "1.00x" if v is base else f"{ratio(v, base):.3f}x"
            lines.append(f"  {v.name:<44} {statistics.median(v.samples):10.1f} "
                         f"{p99(v.samples):9.1f} {rel:>7}")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    """Measure, print and write results/codecs.txt."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--no-write", action="store_true", help="do not write results/")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 15, 3 quick)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 15)
    started = time.monotonic()
    with RedisServer(name="bench-codecs") as server:
        placement = pin(server)
        version = server.client().info("server")["redis_version"]
        sizes, comparisons, verdicts = measure(server, rounds, args.quick)
    header = [
        "cache_service codec benchmark (benchmarks/bench_codecs.py)",
        f"python {platform.python_version()}, redis-py {redis.__version__}, redis-server "
        f"{version} on loopback, orjson {orjson.__version__}, zstandard "
        f"{zstandard.__version__}, {platform.machine()}, {os.cpu_count()} CPUs ({placement})",
        f"{rounds} interleaved rounds per comparison{' (--quick)' if args.quick else ''}; "
        f"ratio = median over rounds of (variant / first row); "
        f"wall time {time.monotonic() - started:.0f} s",
        "bytes: STRLEN of the stored value (ours: 11-byte header included); ratio to raw "
        "orjson; MEMORY USAGE: Redis' figure for the key.",
        "",
    ]
    text = "\n".join([*header, *sizes, *render(comparisons), "targets:", *verdicts])
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "codecs.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
