"""Lua scripts as Redis requests: ``(run_script, TEXT, keys, args)``.

``run_script`` runs a script by its SHA (``EVALSHA``; redis-py loads it on ``NOSCRIPT``), so a
call sends a few bytes instead of the script's text. It works for the sync and the asyncio
clients alike (redis-py's ``Script`` returns an awaitable for the latter), on standalone,
Sentinel and Cluster (where a script's keys must share one slot).

Scripts must never raise: any error reply counts as Redis being unreachable. They use
``redis.pcall`` where a key may hold a foreign value and report such cases in their result.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["DROP_IF_SAME", "run_script"]

# Unlink KEYS[1] only if it still holds ARGV[1] (a dead value we read; not a newer one).
DROP_IF_SAME = """
local v = redis.pcall('GET', KEYS[1])
if v == ARGV[1] then
  return redis.call('UNLINK', KEYS[1])
end
return 0
"""

_registered: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def run_script(client: Any, text: str, keys: list[Any], args: list[Any]) -> Any:
    """Run the Lua ``text`` with ``keys`` and ``args`` (awaitable for asyncio clients)."""
    scripts = _registered.get(client)
    if scripts is None:
        with _lock:
            scripts = _registered.setdefault(client, {})
    script = scripts.get(text)
    if script is None:
        script = scripts[text] = client.register_script(text)
    return script(keys=keys, args=args)
