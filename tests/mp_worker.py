"""A worker process for the multi-process tests: one service, driven by JSON lines on stdin.

    python tests/mp_worker.py '{"url": ..., "prefix": ..., "options": {...}, "mode": "sync"}'

Each stdin line ``{"op": NAME, "args": [...]}`` calls ``service.NAME(*args)`` (awaited on
``AsyncCacheService`` when ``mode`` is ``asyncio`` or ``uvloop``) and answers one line
``{"ok": result}`` or ``{"error": "Type: message"}``. Special ops: ``stats``, ``target``
(breaker state), ``fail`` (open the breaker as a failed request would), ``hammer`` (args:
key, seconds: read ``key`` in a loop, report each value with the monotonic time its read
started; CLOCK_MONOTONIC is host-wide), ``write_versions`` (args: key, count: set 1..count,
report each with the time its set returned), ``exit``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from cache_service import AsyncCacheService, CacheService


def _hammer(get: Any, key: str, seconds: float) -> Any:
    reads: list[tuple[float, Any]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        reads.append((started, get(key)))
    return reads


async def _ahammer(get: Any, key: str, seconds: float) -> Any:
    reads: list[tuple[float, Any]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        reads.append((started, await get(key)))
    return reads


def _write_versions(set_: Any, key: str, count: int) -> Any:
    acks: list[tuple[int, float]] = []
    for version in range(1, count + 1):
        set_(key, version)
        acks.append((version, time.monotonic()))
    return acks


async def _awrite_versions(set_: Any, key: str, count: int) -> Any:
    acks: list[tuple[int, float]] = []
    for version in range(1, count + 1):
        await set_(key, version)
        acks.append((version, time.monotonic()))
    return acks


def _special(svc: Any, op: str) -> Any:
    """Ops that look inside the service (the same for both kinds)."""
    target = svc._target
    if op == "target":
        return target.breaker.state
    if op == "fail":  # as if a request of this process had failed: opens the breaker
        target.failed(ConnectionError("simulated failure in a worker"))
        return target.breaker.state
    raise KeyError(op)


SPECIAL = ("target", "fail")


def _answer(result: Any) -> None:
    sys.stdout.write(json.dumps({"ok": result}, default=str) + "\n")
    sys.stdout.flush()


async def _serve_async(svc: AsyncCacheService) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        cmd = json.loads(line)
        op, args = cmd["op"], cmd.get("args", [])
        if op == "exit":
            return
        try:
            if op == "hammer":
                result = await _ahammer(svc.get, *args)
            elif op == "write_versions":
                result = await _awrite_versions(svc.set, *args)
            elif op in SPECIAL:
                result = _special(svc, op)
            else:
                result = await getattr(svc, op)(*args)
        except Exception as exc:
            sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
            sys.stdout.flush()
            continue
        _answer(result)


def _serve_sync(svc: CacheService) -> None:
    for line in sys.stdin:
        cmd = json.loads(line)
        op, args = cmd["op"], cmd.get("args", [])
        if op == "exit":
            return
        try:
            if op == "hammer":
                result = _hammer(svc.get, *args)
            elif op == "write_versions":
                result = _write_versions(svc.set, *args)
            elif op in SPECIAL:
                result = _special(svc, op)
            else:
                result = getattr(svc, op)(*args)
        except Exception as exc:
            sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
            sys.stdout.flush()
            continue
        _answer(result)


def main() -> None:
    """Build the service the JSON argument describes and serve commands until ``exit``."""
    spec = json.loads(sys.argv[1])
    mode = spec.get("mode", "sync")
    if mode == "sync":
        _serve_sync(CacheService(spec["prefix"], url=spec["url"], **spec.get("options", {})))
        return
    svc = AsyncCacheService(spec["prefix"], url=spec["url"], **spec.get("options", {}))
    if mode == "uvloop":
        import uvloop

        uvloop.run(_serve_async(svc))
    else:
        asyncio.run(_serve_async(svc))


if __name__ == "__main__":
    main()
