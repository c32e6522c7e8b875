"""The import graph of ``cache_service``: no cycle (type-only imports included), and the
operation protocol is a leaf that the operations import instead of the drivers' module."""

from __future__ import annotations

import ast
from pathlib import Path

import cache_service

SRC = Path(cache_service.__file__).resolve().parent
PACKAGE = "cache_service"
# Operation modules: generators and their pieces, with no need of the drivers' module.
PURE = ["loading", "flows", "keyops", "batch", "counters", "tags", "keys", "codec"]


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = [PACKAGE, *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that ``name`` imports, anywhere (under TYPE_CHECKING too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            subs = [f"{module}.{alias.name}" for alias in node.names]
            hits = [s for s in subs if s in known]
            found.update(hits)
            if len(hits) < len(subs) and module in known:
                found.add(module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_no_import_cycles_not_even_type_only() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in sorted(edges[name]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)


def test_the_operation_protocol_imports_nothing_of_ours() -> None:
    assert graph()[f"{PACKAGE}._ops.protocol"] == set()


def test_operation_modules_do_not_import_the_drivers_module() -> None:
    edges = graph()
    for name in PURE:
        assert f"{PACKAGE}.target" not in edges[f"{PACKAGE}.{name}"], name
