"""The Redis requests an operation may yield: small named types, each knowing how to send
itself to a redis-py client.

A request is an immutable ``NamedTuple`` whose type is in ``REQUESTS`` (how the drivers tell
it from an ``Effect``); ``send(client)`` makes the call, with the sync client a reply
and with an asyncio client an awaitable. Tests compare requests by value
(``Get("cs:p::k")``) and script their replies without a socket (``tests/unit/scripted.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

from redis.exceptions import NoScriptError

__all__ = ["REQUESTS", "Call", "Command", "Exists", "Get", "MGet", "PExpire", "Ping", "PipelineSet",
           "Scan", "Script", "Set", "Unlink", "run_script", "sha_of"]


class Get(NamedTuple):
    """``GET key``: the payload, or None."""

    key: str

    def send(self, client: Any) -> Any:
        return client.get(self.key)


class MGet(NamedTuple):
    """``MGET keys...`` (one slot on Cluster): payloads aligned with ``keys``."""

    keys: tuple[str, ...]

    def send(self, client: Any) -> Any:
        return client.mget(*self.keys)


class Set(NamedTuple):
    """``SET key value PX px [NX] [GET]``: with ``get``, the old value; else whether set."""

    key: str
    value: bytes | str
    px: int
    nx: bool = False
    get: bool = False

    def send(self, client: Any) -> Any:
        if self.nx or self.get:
            return client.set(self.key, self.value, px=self.px, nx=self.nx, get=self.get)
        return client.set(self.key, self.value, px=self.px)


class PExpire(NamedTuple):
    """``PEXPIRE key px``: whether the key existed."""

    key: str
    px: int

    def send(self, client: Any) -> Any:
        return client.pexpire(self.key, self.px)


class Exists(NamedTuple):
    """``EXISTS key``: 1 or 0."""

    key: str

    def send(self, client: Any) -> Any:
        return client.exists(self.key)


class Unlink(NamedTuple):
    """``UNLINK keys...`` (one slot on Cluster): how many existed."""

    keys: tuple[str, ...]

    def send(self, client: Any) -> Any:
        return client.unlink(*self.keys)


class Scan(NamedTuple):
    """``SCAN cursor MATCH pattern COUNT page``: ``(next cursor, keys)``."""

    cursor: int
    pattern: str
    page: int

    def send(self, client: Any) -> Any:
        return client.scan(self.cursor, self.pattern, self.page)


class Command(NamedTuple):
    """A raw command sent as it is (``UNLINK``/``MGET`` of keys a cluster client must not
    split by slot: the keys were grouped by node already)."""

    args: tuple[Any, ...]

    def send(self, client: Any) -> Any:
        return client.execute_command(*self.args)


class Ping(NamedTuple):
    """``PING``."""

    def send(self, client: Any) -> Any:
        return client.ping()


class Script(NamedTuple):
    """A Lua script run by its SHA (``EVALSHA``, then ``EVAL`` on ``NOSCRIPT``)."""

    text: str
    keys: tuple[Any, ...]
    args: tuple[Any, ...]

    def send(self, client: Any) -> Any:
        return run_script(client, self.text, self.keys, self.args)


class PipelineSet(NamedTuple):
    """One non-transactional pipeline of ``SET k v PX px``, for the items of one node."""

    items: tuple[tuple[str, bytes], ...]
    px: int

    def send(self, client: Any) -> Any:
        set_all = getattr(client, "set_all", None)  # our connection layer's
        if set_all is not None:
            return set_all(self.items, self.px)
        pipe = client.pipeline(transaction=False)
        for k, payload in self.items:
            pipe.set(k, payload, px=self.px)
        return pipe.execute()


class Call(NamedTuple):
    """A request of the client layer (``fn(client, *args)``): dropping idle connections,
    re-reading the topology, cluster-wide PING and SCAN."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()

    def send(self, client: Any) -> Any:
        return self.fn(client, *self.args)


REQUESTS: frozenset[type] = frozenset(
    (Call, Command, Exists, Get, MGet, PExpire, Ping, PipelineSet, Scan, Script, Set, Unlink))

_shas: dict[str, str] = {}


def sha_of(text: str) -> str:
    """The SHA1 Redis knows ``text`` by."""
    sha = _shas.get(text)
    if sha is None:
        sha = _shas[text] = hashlib.sha1(text.encode()).hexdigest()
    return sha


def run_script(client: Any, text: str, keys: tuple[Any, ...] | list[Any],
               args: tuple[Any, ...] | list[Any]) -> Any:
    """Run the Lua ``text`` with ``keys`` and ``args`` by its SHA, loading it on NOSCRIPT
    (awaitable for asyncio clients). Calling ``evalsha`` directly costs ~15 % less per call
    than redis-py's ``Script`` wrapper."""
    sha = sha_of(text)
    try:
        reply = client.evalsha(sha, len(keys), *keys, *args)
    except NoScriptError:
        return client.eval(text, len(keys), *keys, *args)
    if type(reply) is _COROUTINE:
        return _arun(client, reply, text, keys, args)
    return reply


async def _arun(client: Any, pending: Any, text: str, keys: tuple[Any, ...] | list[Any],
                args: tuple[Any, ...] | list[Any]) -> Any:
    try:
        return await pending
    except NoScriptError:
        return await client.eval(text, len(keys), *keys, *args)


async def _probe() -> None:
    return None


_sample = _probe()
_COROUTINE = type(_sample)
_sample.close()
