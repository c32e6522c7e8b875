"""An app written for django-redis: it calls django-redis' extra API on Django's default cache
(``django.core.cache.cache``) and nothing of ours. ``tests/test_django_redis_compat.py`` runs
it unchanged on django-redis itself, on our backend with Redis up, and with Redis refused,
and compares what every call returned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from django.core.cache import cache


def record_visit(page: str) -> int:
    """A page counter that starts itself."""
    return int(cache.incr(f"visits:{page}", ignore_key_check=True))


def claim_job(job: str) -> bool:
    """Exactly one worker claims a job."""
    return bool(cache.set(f"job:{job}", "mine", timeout=30, nx=True))


def rebuild_report(name: str) -> str:
    """One rebuild at a time across workers."""
    with cache.lock(f"lock:report:{name}", timeout=5, blocking_timeout=1):
        cache.set(f"report:{name}", f"built {name}", timeout=60)
        return str(cache.get(f"report:{name}"))


def scenario() -> list[tuple[str, Any]]:
    """Every call of the app, with what it returned."""
    out: list[tuple[str, Any]] = []

    def note(name: str, value: Any) -> None:
        out.append((name, value))

    keys_and_expiry(note)
    counters(note)
    locks(note)
    note("delete_pattern(user:*)", cache.delete_pattern("user:*"))
    note("keys after", sorted(cache.keys("*")))
    note("delete_pattern(*)", cache.delete_pattern("*"))
    note("keys at the end", cache.keys("*"))
    return out


Note = Callable[[str, Any], None]


def keys_and_expiry(note: Note) -> None:
    note("delete_pattern(*) start", cache.delete_pattern("*") >= 0)
    for n in range(3):
        cache.set(f"user:{n}:profile", {"n": n}, timeout=60)
    cache.set("settings", {"theme": "dark"}, timeout=None)
    note("keys(user:*)", sorted(cache.keys("user:*")))
    note("iter_keys(*)", sorted(cache.iter_keys("*")))
    note("keys(user:?:profile)", sorted(cache.keys("user:?:profile")))
    note("keys(nothing*)", cache.keys("nothing*"))
    note("ttl", cache.ttl("user:0:profile"))
    note("ttl no expiry", cache.ttl("settings"))
    note("ttl missing", cache.ttl("missing"))
    note("pttl close to 60 s", 59_000 <= cache.pttl("user:0:profile") <= 60_000)
    note("pttl no expiry", cache.pttl("settings"))
    note("pttl missing", cache.pttl("missing"))
    note("expire", cache.expire("user:0:profile", 120))
    note("ttl after expire", cache.ttl("user:0:profile"))
    note("expire missing", cache.expire("missing", 10))
    note("pexpire", cache.pexpire("user:1:profile", 90_000))
    note("ttl after pexpire", cache.ttl("user:1:profile"))
    in_5_min = datetime.now(timezone.utc) + timedelta(minutes=5)
    note("expire_at", cache.expire_at("user:2:profile", in_5_min))
    note("ttl after expire_at", cache.ttl("user:2:profile") in (299, 300))
    note("expire_at unix time", cache.expire_at("user:2:profile", int(time.time()) + 200))
    note("persist", cache.persist("user:0:profile"))
    note("ttl after persist", cache.ttl("user:0:profile"))
    note("persist again", cache.persist("user:0:profile"))
    note("persist missing", cache.persist("missing"))
    note("get after persist", cache.get("user:0:profile"))
    note("expire 0 deletes", cache.expire("user:0:profile", 0))
    note("gone", cache.get("user:0:profile"))
    note("touch None", cache.touch("user:1:profile", None))
    note("ttl after touch None", cache.ttl("user:1:profile"))


def counters(note: Note) -> None:

    note("visits", [record_visit("home") for _ in range(3)])
    note("incr", cache.incr("visits:home", 10))
    try:
        cache.incr("visits:never")
    except ValueError:
        note("incr missing", "ValueError")
    note("decr", cache.decr("visits:home", 3))
    note("claim", [claim_job("42"), claim_job("42")])
    note("set xx missing", cache.set("xx", 1, xx=True))
    note("get xx", cache.get("xx"))
    note("set xx present", cache.set("job:42", "theirs", xx=True))
    note("get xx present", cache.get("job:42"))


def locks(note: Note) -> None:

    note("rebuild", rebuild_report("daily"))
    lock = cache.lock("lock:manual", timeout=10)
    note("acquire", lock.acquire(blocking=False))
    note("second acquire", cache.lock("lock:manual", timeout=10).acquire(blocking=False))
    started = time.monotonic()
    note("blocking_timeout", cache.lock("lock:manual").acquire(blocking_timeout=0.3))
    note("waited about 0.3 s", 0.15 < time.monotonic() - started < 5)
    note("locked", lock.locked())
    note("owned", lock.owned())
    note("extend", lock.extend(5))
    note("ttl after extend", cache.ttl("lock:manual") in (14, 15))
    lock.release()
    note("locked after release", lock.locked())


async def async_scenario() -> list[tuple[str, Any]]:
    """Django's own async API, as an async view of such an app calls it."""
    out: list[tuple[str, Any]] = []
    await cache.aset("a", 1, timeout=60)
    out.append(("aget", await cache.aget("a")))
    out.append(("aadd", await cache.aadd("a", 2)))
    out.append(("aincr", await cache.aincr("a", 5)))
    out.append(("ahas_key", await cache.ahas_key("a")))
    out.append(("adelete", await cache.adelete("a")))
    out.append(("aget_or_set", await cache.aget_or_set("b", "made", timeout=60)))
    out.append(("concurrent aget", await asyncio.gather(*(cache.aget("b") for _ in range(5)))))
    await cache.adelete_many(["b"])
    return out
