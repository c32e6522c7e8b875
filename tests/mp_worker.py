"""A worker process for the multi-process tests: one service, driven by JSON lines on stdin.

    python tests/mp_worker.py '{"url": ..., "prefix": ..., "options": {...}, "mode": "sync"}'

Each stdin line ``{"op": NAME, "args": [...]}`` calls ``service.NAME(*args)`` (awaited on
``AsyncCacheService`` when ``mode`` is ``asyncio`` or ``uvloop``) and answers one line
``{"ok": result}`` or ``{"error": "Type: message"}``. Special ops: ``stats``, ``target``
(breaker state), ``fail`` (open the breaker as a failed request would), ``hammer`` (args:
key, seconds: read ``key`` in a loop, report each value with the monotonic time its read
started; CLOCK_MONOTONIC is host-wide), ``hammer_runs`` (the same, one entry per run of equal
values), ``write_paced`` (args: key, seconds, interval), ``write_versions`` (args: key,
count: set 1..count, report each with the time its set returned), ``exit``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
from typing import Any

import uvloop

from cache_service import AsyncCacheService, CacheService


async def _maybe(result: Any) -> Any:
    """``result``, awaited if the service is the async one."""
    return await result if inspect.isawaitable(result) else result


async def _hammer(svc: Any, key: str, seconds: float) -> Any:
    reads: list[tuple[float, Any]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        reads.append((started, await _maybe(svc.get(key))))
    return reads


async def _hammer_runs(svc: Any, key: str, seconds: float) -> Any:
    """Like ``_hammer``, compacted: one ``[value, first start, last start, reads]`` per run
    of equal values (a near-cache hit costs ~1 µs: millions of reads)."""
    runs: list[list[Any]] = []
    end = time.monotonic() + seconds
    is_async = isinstance(svc, AsyncCacheService)
    while True:
        started = time.monotonic()
        if started >= end:
            return runs
        value = await svc.get(key) if is_async else svc.get(key)
        if runs and runs[-1][0] == value:
            runs[-1][2] = started
            runs[-1][3] += 1
        else:
            runs.append([value, started, started, 1])


async def _write_versions(svc: Any, key: str, count: int) -> Any:
    acks: list[tuple[int, float]] = []
    for version in range(1, count + 1):
        await _maybe(svc.set(key, version))
        acks.append((version, time.monotonic()))
    return acks


async def _write_paced(svc: Any, key: str, seconds: float, interval: float) -> Any:
    """Set 1, 2, 3... every ``interval`` for ``seconds``; each version with its ack time."""
    acks: list[tuple[int, float]] = []
    end = time.monotonic() + seconds
    version = 0
    while time.monotonic() < end:
        version += 1
        await _maybe(svc.set(key, version))
        acks.append((version, time.monotonic()))
        await asyncio.sleep(interval)
    return acks


async def _run(svc: Any, op: str, args: list[Any]) -> Any:
    target = svc._target
    if op == "target":
        return target.breaker.state
    if op == "fail":  # as if a request of this process had failed: opens the breaker
        target.failed(ConnectionError("simulated failure in a worker"))
        return target.breaker.state
    if op == "hammer":
        return await _hammer(svc, *args)
    if op == "hammer_runs":
        return await _hammer_runs(svc, *args)
    if op == "write_paced":
        return await _write_paced(svc, *args)
    if op == "write_versions":
        return await _write_versions(svc, *args)
    return await _maybe(getattr(svc, op)(*args))


def _serve(svc: Any, loop: asyncio.AbstractEventLoop) -> None:
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "exit":
            return
        try:
            reply = {"ok": loop.run_until_complete(_run(svc, cmd["op"], cmd.get("args", [])))}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply, default=str) + "\n")
        sys.stdout.flush()


def main() -> None:
    """Build the service the JSON argument describes and serve commands until ``exit``."""
    spec = json.loads(sys.argv[1])
    mode = spec.get("mode", "sync")
    kind = CacheService if mode == "sync" else AsyncCacheService
    loop = uvloop.new_event_loop() if mode == "uvloop" else asyncio.new_event_loop()
    svc = kind(spec["prefix"], url=spec["url"], **spec.get("options", {}))
    try:
        _serve(svc, loop)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


if __name__ == "__main__":
    main()
