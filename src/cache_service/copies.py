"""Fresh copies of decoded values without decoding again (pure).

A dict or list whose leaves (and dict keys) are all immutable scalars is fully copied by new
containers around the same leaves, which costs a fraction of decoding its payload again. The
memory store and the near cache keep such values decoded (objects they decoded themselves,
never a caller's) and hand out ``Kept.fresh()``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IMMUTABLE", "Kept", "copy_plan"]

IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})


class Kept:
    """A decoded dict or list kept beside its payload (never handed out): ``fresh()`` is new
    containers all the way down around shared immutable leaves. ``plan``: ``(key or index,
    sub-plan)`` for each nested container, in order."""

    __slots__ = ("plan", "value")

    def __init__(self, value: dict[Any, Any] | list[Any], plan: tuple[Any, ...]) -> None:
        self.value = value
        self.plan = plan

    def fresh(self) -> Any:
        return _fresh(self.value, self.plan)


def _fresh(value: Any, plan: tuple[Any, ...]) -> Any:
    value = value.copy()
    for i, sub in plan:
        value[i] = _fresh(value[i], sub)
    return value


def copy_plan(value: dict[Any, Any] | list[Any]) -> tuple[Any, ...] | None:
    """How to copy ``value`` (see ``Kept``), or None unless every leaf is of ``IMMUTABLE``
    (dict keys too): only then are fresh containers a full copy."""
    if type(value) is dict:
        if not IMMUTABLE.issuperset(map(type, value)):
            return None
        items: Any = value.items()
    else:
        items = enumerate(value)
    plan = []
    for i, v in items:
        t = type(v)
        if t in IMMUTABLE:
            continue
        if t is not dict and t is not list:
            return None
        sub = copy_plan(v)
        if sub is None:
            return None
        plan.append((i, sub))
    return tuple(plan)
