"""The narrated walk-through behind ``cache-service demo``: the usage contract, live."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from cache_service._runtime.view import runtime_view
from cache_service.decorators import cached
from cache_service.service import CacheService

__all__ = ["run_demo"]


class SlowDatabase:
    """A stand-in data source: every query sleeps ``latency`` seconds."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.queries = 0
        self.users = {i: {"id": i, "name": n, "email": f"{n.lower()}@example.com"}
                      for i, n in enumerate(["Ada", "Grace", "John", "Linus"], start=121)}
        self.products = {123: {"name": "Widget", "price": 10.0}}

    def get_user(self, user_id: int) -> dict[str, Any] | None:
        """One slow lookup."""
        self.queries += 1
        time.sleep(self.latency)
        return self.users.get(user_id)

    def get_product(self, product_id: int) -> dict[str, Any]:
        """One slow lookup."""
        self.queries += 1
        time.sleep(self.latency)
        return dict(self.products[product_id])


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - start) * 1000


class Demo:
    """One run of the walk-through: its services, data source and output."""

    def __init__(self, redis_url: str, latency: float, out: Console) -> None:
        self.url = redis_url
        self.out = out
        self.db = SlowDatabase(latency)
        self.run = uuid.uuid4().hex[:8]
        self.services: list[CacheService] = []
        self.users = self.service("user", default_ttl=600)
        self.api = self.service("api", default_ttl=300)

    def service(self, name: str, **kwargs: Any) -> CacheService:
        """A service under this run's own prefix, cleaned up at the end."""
        svc = CacheService(f"demo-{self.run}:{name}", url=self.url, **kwargs)
        self.services.append(svc)
        return svc

    def header(self) -> None:
        """Say which store serves this run."""
        self.out.rule("[bold]cache_service demo")
        if self.users.is_redis_available():
            self.out.print(f"Store: [green]Redis at {self.users.location}[/]")
        else:
            self.out.print(
                f"Store: [yellow]in-memory: Redis unreachable at {self.users.location}[/] "
                "(every call below is served by the bounded memory store; the cache moves "
                "to Redis by itself once it answers)")
        self.out.print(f"Simulated database latency: {self.db.latency * 1000:.0f} ms per query\n")

    def cache_aside(self) -> None:
        """Seed: set/get, TTL, default on a miss."""
        self.out.rule("1. Cache-aside: miss, then hit")
        users, db = self.users, self.db

        def get_user(user_id: int) -> Any:
            hit = users.get(f"user:{user_id}")
            if hit is not None:
                return hit
            user = db.get_user(user_id)
            if user is not None:
                users.set(f"user:{user_id}", user, ttl=300)
            return user

        user, miss_ms = _timed(lambda: get_user(123))
        _, hit_ms = _timed(lambda: get_user(123))
        self.out.print(f"get_user(123) first call  (miss, database): {miss_ms:8.2f} ms -> {user}")
        self.out.print(f"get_user(123) second call (hit, cache):     {hit_ms:8.2f} ms "
                       f"({miss_ms / max(hit_ms, 1e-6):.0f}x faster)")
        fallback = users.get("user:999", default={"id": 999, "name": "Unknown"})
        self.out.print(f"get('user:999', default=...) on a miss -> {fallback}\n")

    def invalidation(self) -> None:
        """Seed: invalidate on update, by key and by pattern."""
        self.out.rule("2. Invalidation on update")
        api, db = self.api, self.db
        api.set("product:123", db.get_product(123))
        for suffix in ("reviews", "stock"):
            api.set(f"product:123:{suffix}", {"cached": suffix})
        self.out.print(f"cached product:123 -> {api.get('product:123')}")
        db.products[123]["price"] = 12.5
        self.out.print("database: price of product 123 changed to 12.50")
        self.out.print(f"delete('product:123') removed {api.delete('product:123')} key")
        self.out.print(f"invalidate_pattern('product:123:*') removed "
                       f"{api.invalidate_pattern('product:123:*')} related keys")
        fresh, ms = _timed(lambda: api.get("product:123") or db.get_product(123))
        self.out.print(f"next read reloads the truth in {ms:.1f} ms -> {fresh}\n")

    def isolation(self) -> None:
        """Seed: same key, different prefixes."""
        self.out.rule("3. Service isolation with prefixes")
        table = Table("service", "get('status')")
        pairs = (("auth", "authenticated"), ("product", "in_stock"), ("order", "pending"))
        for name, status in pairs:
            self.service(name).set("status", status)
        for svc in self.services[-3:]:
            table.add_row(svc.prefix, repr(svc.get("status")))
        self.out.print(table)
        self.out.print("Same key, three prefixes, no conflicts.\n")

    def decorator(self) -> None:
        """Seed: @cached with key_func, ttl, prefix and .invalidate()."""
        self.out.rule("4. The @cached decorator")
        db = self.db

        @cached(key_func=lambda user_id: f"user:{user_id}", ttl=300,
                prefix=f"demo-{self.run}:lookup", url=self.url)
        def get_user_from_db(user_id: int) -> Any:
            return db.get_user(user_id)

        self.services.append(get_user_from_db.cache)  # type: ignore[attr-defined]
        _, first = _timed(lambda: get_user_from_db(124))
        _, second = _timed(lambda: get_user_from_db(124))
        self.out.print(f"get_user_from_db(124): first {first:.2f} ms (database), "
                       f"second {second:.2f} ms (cache)")
        dropped = get_user_from_db.invalidate()  # type: ignore[attr-defined]
        _, third = _timed(lambda: get_user_from_db(124))
        self.out.print(f"get_user_from_db.invalidate() dropped {dropped} entr"
                       f"{'y' if dropped == 1 else 'ies'}; next call {third:.2f} ms "
                       "(database again)\n")

    def near_cache(self) -> None:
        """Hot keys from process memory, and another client's delete reaching them."""
        self.out.rule("5. Near cache: hot keys from process memory")
        flags = self.service("flags", default_ttl=60, near_cache=True)
        if not flags.is_redis_available():
            self.out.print("skipped: the near cache needs Redis (its invalidation pushes keep "
                           "it coherent); without Redis every read is a memory-store read\n")
            return
        flags.set("checkout-v2", {"on": True, "percent": 25})
        deadline = time.monotonic() + 3
        near = runtime_view(flags).near
        assert near is not None
        while flags.full_key("checkout-v2") not in near.entries and time.monotonic() < deadline:
            flags.get("checkout-v2")  # the first reads go to Redis until the tracker is in
            time.sleep(0.01)
        self.users.get("user:123")
        _, redis_ms = _timed(lambda: self.users.get("user:123"))  # a warm round trip
        value, ms = _timed(lambda: [flags.get("checkout-v2") for _ in range(1000)])
        self.out.print(f"get('checkout-v2') from process memory: {ms:.3f} µs per call "
                       f"(a Redis round trip just took {redis_ms * 1000:.0f} µs) -> {value[0]}")
        other = redis.Redis.from_url(self.url)  # another client: any process, any language
        started = time.perf_counter()
        other.delete(flags.full_key("checkout-v2"))
        while flags.get("checkout-v2") is not None and time.perf_counter() - started < 2:
            pass
        seen = (time.perf_counter() - started) * 1000
        other.close()
        self.out.print(f"another client deleted it: this process saw the miss {seen:.2f} ms "
                       f"later -> {flags.get('checkout-v2', 'gone')}\n")

    def summary(self) -> None:
        """Figures, then remove every key this run wrote."""
        self.out.rule("Summary")
        stats = self.users.stats()["target"]
        self.out.print(f"database queries: {self.db.queries}; backend: {stats['backend']}; "
                       f"breaker: {stats['breaker_state']}; "
                       f"memory entries: {stats['memory_entries']}")
        removed = sum(svc.clear_all() for svc in self.services)
        self.out.print(f"cleaned up {removed} demo key(s) (clear_all() touches only its own "
                       "prefix)")


def run_demo(redis_url: str, latency: float = 0.05, console: Console | None = None) -> int:
    """Run every scenario against ``redis_url`` (or the memory store); returns an exit code."""
    demo = Demo(redis_url, latency, console or Console(highlight=False))
    demo.header()
    demo.cache_aside()
    demo.invalidation()
    demo.isolation()
    demo.decorator()
    demo.near_cache()
    demo.summary()
    return 0
