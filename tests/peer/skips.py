"""Peer-suite tests skipped per mode, each with the reason (docs/guides/frameworks.md lists them).

Modes: ``up`` (Redis up), ``down`` (Redis refused from the start: memory fallback),
``restart`` (Redis killed and restarted during the run). Nothing else is skipped.
"""

from __future__ import annotations

DJANGO: dict[str, dict[str, str]] = {"up": {}, "down": {}, "restart": {}}
CACHELIB: dict[str, dict[str, str]] = {"up": {}, "down": {}, "restart": {}}
DOGPILE: dict[str, dict[str, str]] = {"up": {}, "down": {}, "restart": {}}
