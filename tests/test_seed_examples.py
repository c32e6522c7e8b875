"""Every code example of the usage contract runs as written (import line: cache_service).

The contract is copied to tests/data/cache_service_usage.md. Each run happens in a fresh
interpreter with REDIS_URL set, so the global instances never reach this machine's own Redis;
the one example that names localhost:6379 explicitly is pointed at the test server instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .servers import free_port

SEED = Path(__file__).parent / "data" / "cache_service_usage.md"

RUNNER = r'''
import asyncio, json, re, sys, types
seed, port = sys.argv[1], sys.argv[2]
text = open(seed).read()
blocks = re.findall(r"```python\n(.*?)```", text, re.S)
calls = []

class Query:
    def __init__(self, model): self.model = model
    def filter_by(self, **kw): self.kw = kw; return self
    def first(self):
        calls.append(("first", self.kw)); return {"id": self.kw["id"], "name": "John"}
    def update(self, data): calls.append(("update", data)); return {**self.kw, **data}
    def delete(self): calls.append(("delete", self.kw)); return 1

class DB:
    def query(self, model): return Query(model)
    def update(self, pid, data): calls.append(("db.update", pid))
    async def get_user(self, uid): calls.append(("get_user", uid)); return {"id": uid}
    async def update_user(self, uid, data): return {"id": uid, **data}

class User: pass

ns = {"db": DB(), "User": User, "print": lambda *a: calls.append(("print",) + a)}
ran = 0
for code in blocks:
    code = code.replace("from backend.services.cache_service import", "from cache_service import")
    code = code.replace('host="localhost",\n    port=6379,', f'host="127.0.0.1",\n    port={port},')
    exec(compile(code, "<seed>", "exec"), ns)
    ran += 1

# the decorator block called get_user_from_db twice (one query) and invalidated it
assert [c[0] for c in calls].count("first") == 1, calls
assert ns["get_user_from_db"](123) == ns["get_user_from_db"](123) == {"id": 123, "name": "John"}
assert [c[0] for c in calls].count("first") == 2, calls
ns["get_user_from_db"].invalidate()
ns["update_product"](123, {"price": 11})
repo = ns["UserRepository"](); repo.db = DB()
assert repo.get_user(7) == repo.get_user(7) == {"id": 7, "name": "John"}
repo.update_user(7, {"name": "Jane"}); repo.delete_user(7)

from fastapi import FastAPI
from fastapi.testclient import TestClient
app = FastAPI(); app.include_router(ns["router"])
with TestClient(app) as client:
    assert client.get("/users/5").json() == {"id": 5}
    assert client.get("/users/5").json() == {"id": 5}
    assert client.put("/users/5", json={"name": "x"}).json() == {"id": 5, "name": "x"}
assert len([c for c in calls if c[0] == "get_user"]) == 1
from cache_service import api_cache, session_cache, user_cache
assert api_cache.get("endpoint:/users") == {"users": [...]}
assert session_cache.get("session:abc123") == {"user_id": 123}
for svc in (api_cache, user_cache, session_cache): svc.clear_all()
for p in ("user", "api", "user_lookup", "auth", "product", "order", "user_repo", "my_service"):
    __import__("cache_service").CacheService(p).clear_all()
print(json.dumps({"blocks": ran, "statuses": [c[1] for c in calls if c[0] == "print"]}))
'''


def run_seed(redis_url: str, port: int) -> dict[str, Any]:
    """Run every block of the contract in a fresh interpreter against ``redis_url``."""
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, str(SEED), str(port)],
        capture_output=True, text=True, timeout=120, check=False,
        # the suite's state directory: the default one (<tmp>/cache_service-<uid>) is not ours
        env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin",
             "CACHE_SERVICE_DIR": os.environ["CACHE_SERVICE_DIR"]},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_seed_examples_run_on_redis(redis_server: Any) -> None:
    result = run_seed(redis_server.url, redis_server.port)
    assert result["blocks"] >= 10
    assert "Using Redis cache" in result["statuses"]
    assert ["authenticated"] in [[s] for s in result["statuses"]]


@pytest.mark.parametrize("where", ["unreachable"])
def test_seed_examples_run_without_redis(where: str) -> None:
    port = free_port()
    result = run_seed(f"redis://127.0.0.1:{port}/0", port)
    assert "Using in-memory cache (Redis unavailable)" in result["statuses"]
