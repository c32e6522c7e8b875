"""The readers of the runtime (integrations, CLI, ``@cached``, the demo) read no private
attribute of another object: what they need of a service comes from its ``RuntimeView``
(``cache_service._runtime.view``, the one sanctioned reader of the services' internals)."""

from __future__ import annotations

import ast
from pathlib import Path

import cache_service

SRC = Path(cache_service.__file__).resolve().parent
READERS = [*sorted((SRC / "integrations").rglob("*.py")), *sorted((SRC / "cli").rglob("*.py")),
           SRC / "decorators.py", SRC / "demo.py"]
# A module's own attributes, and a class's in its classmethods.
OWN = {"self", "cls"}
# Private names of the standard library, read on purpose: (module path under SRC, expression).
ALLOWED: set[tuple[str, str]] = set()


def private_reads(where: str, source: str) -> list[str]:
    """``where:line: expression`` for each ``x._name`` in ``source`` whose ``x`` is not
    ``self``/``cls`` (dunders are public protocol, not private)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") \
                or node.attr.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in OWN:
            continue
        text = ast.unparse(node)
        if (where, text) not in ALLOWED:
            found.append(f"{where}:{node.lineno}: {text}")
    return found


def test_readers_use_the_runtime_view_not_private_fields() -> None:
    found = [hit for path in READERS
             for hit in private_reads(path.relative_to(SRC).as_posix(), path.read_text())]
    assert not found, "private attributes read from outside (use runtime_view):\n" + \
        "\n".join(found)


def test_the_rule_flags_reads_through_another_object_only() -> None:
    source = ("import sys\n"
              "def f(self, svc):\n"
              "    self._x = svc._target.__class__\n"
              "    sys._getframe(1)\n"
              "    return self._service._target\n")
    hits = private_reads("integrations/cachelib.py", source)
    assert sorted(h.split(": ", 1)[1] for h in hits) == [
        "self._service._target", "svc._target", "sys._getframe"]
