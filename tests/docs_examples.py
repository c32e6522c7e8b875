"""The python examples of README.md and docs/**/*.md, found and run the way a reader runs them.

``blocks(path)`` finds every fenced python block with its line and whether it sits inside a
``!!! pending "lands with ..."`` admonition (a feature still being built: skipped until the lead
unpends it at merge). ``run_pages`` runs each page's blocks in order in one namespace per page,
in this interpreter (tests/test_docs_examples.py calls it in a fresh one per mode): top-level
``await`` works (one event loop per page), and ``localhost:6379`` / ``127.0.0.1:6379`` in an
example are pointed at the server under test. The namespace holds ``db`` and ``User`` (your
database layer, as the usage examples call it), as tests/test_seed_examples.py does.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\w*)")
PENDING = re.compile(r"^(?P<indent>\s*)!!! pending\b")


@dataclass
class Block:
    line: int
    code: str
    pending: bool


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    found: list[Block] = []
    pending_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() and pending_indent is not None and (
                len(line) - len(line.lstrip()) <= pending_indent):
            pending_indent = None
        if (m := PENDING.match(line)) is not None:
            pending_indent = len(m["indent"])
        fence = FENCE.match(line)
        if fence is not None:
            indent, start = len(fence["indent"]), i + 1
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                i += 1
            if fence["lang"] == "python":
                body = "\n".join(row[indent:] for row in lines[start:i])
                found.append(Block(start, body + "\n", pending_indent is not None))
        i += 1
    return found


class Query:
    def __init__(self, model: Any) -> None:
        self.kw: dict[str, Any] = {}

    def filter_by(self, **kw: Any) -> Query:
        self.kw = kw
        return self

    def first(self) -> dict[str, Any]:
        return {"id": self.kw.get("id"), "name": "John"}

    def update(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**self.kw, **data}

    def delete(self) -> int:
        return 1


class DB:
    """Stands for the reader's database layer in the examples."""

    def query(self, model: Any) -> Query:
        return Query(model)

    def update(self, pid: Any, data: Any) -> None:
        return None

    async def get_user(self, uid: Any) -> dict[str, Any]:
        return {"id": uid}

    async def update_user(self, uid: Any, data: dict[str, Any]) -> dict[str, Any]:
        return {"id": uid, **data}


class User:
    pass


def _point(code: str, port: int) -> str:
    code = code.replace("localhost:6379", f"127.0.0.1:{port}")
    code = code.replace("127.0.0.1:6379", f"127.0.0.1:{port}")
    return re.sub(r'host="localhost",(\s*)port=6379', rf'host="127.0.0.1",\g<1>port={port}', code)


def _clean_up(loop: asyncio.AbstractEventLoop) -> None:
    """Remove what the page's examples wrote (the suite's Redis is shared) and close their
    services: every service still alive, through the registry the exporters read."""
    from cache_service import AsyncCacheService, registry

    for service in registry.live_services():
        if isinstance(service, AsyncCacheService):
            loop.run_until_complete(service.clear_all())
            loop.run_until_complete(service.aclose())
        else:
            service.clear_all()


def run_page(path: Path, port: int) -> dict[str, Any]:
    # a real module, registered while the page runs: frameworks (Litestar) resolve a handler's
    # annotations through sys.modules[handler.__module__]
    module = types.ModuleType("__docs_example__")
    module.__dict__.update({"db": DB(), "User": User})
    namespace: dict[str, Any] = module.__dict__
    sys.modules[module.__name__] = module
    loop = asyncio.new_event_loop()
    ran = skipped = 0
    try:
        for block in blocks(path):
            if block.pending:
                skipped += 1
                continue
            where = f"{path.relative_to(ROOT)}:{block.line}"
            try:
                code = compile(_point(block.code, port), where, "exec",
                               flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                result = eval(code, namespace)
                if asyncio.iscoroutine(result):
                    loop.run_until_complete(result)
            except BaseException:
                return {"ran": ran, "skipped": skipped, "error": where + "\n" +
                        traceback.format_exc(limit=-6)}
            ran += 1
    finally:
        _clean_up(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        sys.modules.pop(module.__name__, None)
    return {"ran": ran, "skipped": skipped, "error": None}


def main() -> None:
    port = int(sys.argv[1])
    results = {}
    for path in pages():
        results[str(path.relative_to(ROOT))] = run_page(path, port)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
