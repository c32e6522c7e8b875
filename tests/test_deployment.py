"""The production shape: ``uvicorn --workers 4 --loop uvloop``, a shared database, Redis cut and
hung mid-run. No request may fail and no GET may return a version older than a PUT that had
returned before the GET was sent."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import eventually
from .servers import ChaosProxy, RedisServer, free_port

ITEMS = 4  # one per client thread: each item's PUTs and GETs are sequential


def _start_uvicorn(tmp_path: Path, redis_url: str, workers: int) -> tuple[Any, str]:
    db = tmp_path / "catalogue.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)")
        conn.executemany("INSERT INTO items VALUES (?, 1)", [(i,) for i in range(ITEMS)])
    port = free_port()
    env = {**os.environ, "CATALOGUE_DB": str(db), "REDIS_URL": redis_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.apps.catalogue:app", "--workers", str(workers),
         "--loop", "uvloop", "--port", str(port), "--host", "127.0.0.1", "--log-level",
         "warning"], env=env, cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    assert eventually(up, timeout=30), proc.stderr.read() if proc.poll() is not None else ""
    return proc, f"http://127.0.0.1:{port}"


def _client(base: str, item: int, stop: threading.Event, report: dict[str, Any]) -> None:
    acked = 0
    with httpx.Client(base_url=base, timeout=10, headers={"Connection": "close"}) as http:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 5 == 0:
                reply = http.put(f"/items/{item}")
                if reply.status_code != 200:
                    report["errors"].append(reply.status_code)
                    continue
                acked = reply.json()["version"]
                report["puts"] += 1
            else:
                reply = http.get(f"/items/{item}")
                if reply.status_code != 200:
                    report["errors"].append(reply.status_code)
                    continue
                report["gets"] += 1
                if reply.json()["version"] < acked:
                    report["stale"].append((item, reply.json()["version"], acked))


@pytest.mark.slow
def test_uvicorn_workers_through_a_cut_and_a_hang(
        tmp_path: Path, chaos_proxy: ChaosProxy, fresh_redis_server: RedisServer) -> None:
    proc, base = _start_uvicorn(tmp_path, chaos_proxy.url, workers=4)
    report: dict[str, Any] = {"errors": [], "stale": [], "gets": 0, "puts": 0}
    stop = threading.Event()
    clients = [threading.Thread(target=_client, args=(base, i, stop, report))
               for i in range(ITEMS)]
    try:
        for c in clients:
            c.start()
        time.sleep(1.5)
        chaos_proxy.cut()
        time.sleep(2.0)
        chaos_proxy.heal()
        time.sleep(2.0)
        chaos_proxy.hang()
        time.sleep(2.0)
        chaos_proxy.heal()
        time.sleep(2.0)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=30)
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert report["errors"] == [], err[-3000:]
    assert report["stale"] == []
    assert report["gets"] > 200
    assert report["puts"] > 50
    assert "Traceback" not in err, err[-3000:]
    # after the last heal the workers are back on Redis and Redis holds no stale row
    raw = fresh_redis_server.client()
    assert raw.dbsize() <= ITEMS
