"""The import graph of ``cache_service``: no cycle (type-only imports included), the
operation protocol is a leaf, and each private subpackage imports only the layers below it
(the map is in docs/concepts/architecture.md, "How it is built")."""

from __future__ import annotations

import ast
from pathlib import Path

import cache_service

SRC = Path(cache_service.__file__).resolve().parent
PACKAGE = "cache_service"
# Which layer may not import which (at run time; type-only imports count only for cycles):
# the pure operations never import the runtime (they read the stores it hands them: fallback,
# near); host-shared state knows nothing above it; the client layer knows no operation.
FORBIDDEN = {
    "_ops": ("_runtime", "_wire", "core", "service", "aio", "integrations", "cli"),
    "_host": ("_ops", "_runtime", "_near", "_redis", "_wire", "core", "service", "aio",
              "integrations", "cli"),
    "_redis": ("_ops", "_runtime", "_host", "_near", "core", "service", "aio",
               "integrations", "cli"),
    "_near": ("_ops", "_runtime", "core", "service", "aio", "integrations", "cli"),
    "_runtime": ("core", "service", "aio", "integrations", "cli"),
}


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = [PACKAGE, *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_only(tree: ast.Module) -> set[int]:
    """The ids of import nodes under ``if TYPE_CHECKING:``."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return found


def imports_of(name: str, path: Path, known: dict[str, Path],
               runtime_only: bool = False) -> set[str]:
    """Every module of ours that ``name`` imports, anywhere (under TYPE_CHECKING too, unless
    ``runtime_only``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    skip = _type_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
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


def test_each_layer_imports_only_the_layers_below_it() -> None:
    known = modules()
    wrong = []
    for name, path in known.items():
        layer = name.split(".")[1] if name.count(".") else ""
        for dep in imports_of(name, path, known, runtime_only=True):
            dep_layer = dep.split(".")[1] if dep.count(".") else ""
            if dep_layer in FORBIDDEN.get(layer, ()):
                wrong.append(f"{name} imports {dep}")
    assert not wrong, "\n".join(wrong)
