"""The operation protocol: what an operation yields, what it is sent, what is thrown into it.

An operation is a generator. It yields a Redis request (a named type of ``_ops.requests``
that sends itself to a client: ``Get(key)``, ``Set(key, value, px)``...) and is sent the
reply, or it yields an ``Effect`` (see ``loading``) that only the caller's world can perform.
A failed request is thrown in as ``Unavailable`` (an outage), ``ReplyError`` (Redis refused
this one request) or ``WrongType`` (the key holds foreign, non-string data). This module
imports nothing of ours, so every layer may import it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeVar

__all__ = ["Effect", "Op", "ReplyError", "Request", "Unavailable", "WrongType"]

T = TypeVar("T")


class Request(Protocol):
    """A Redis request: ``send(client)`` calls the client (a reply, or an awaitable for an
    asyncio client)."""

    def send(self, client: Any) -> Any: ...


class Effect(Protocol):
    """A step of a loading flow done outside Redis (see ``loading``), blocking or awaited."""

    def perform(self, loader: Callable[[], Any] | None) -> Any: ...

    async def aperform(self, loader: Callable[[], Any] | None) -> Any: ...


Op = Generator[Request | Effect, Any, T]


class Unavailable(Exception):
    """Redis could not serve this request; the operation falls back to memory."""


class WrongType(Exception):
    """The key holds a non-string Redis value: foreign data, a miss."""


class ReplyError(Unavailable):
    """Redis answered this one request with an error (OOM, NOPERM, BUSY, LOADING...), or the
    client could not encode it: Redis is reachable and the breaker does not move. A read is
    a miss; a write is refused (see ``_ops.write.write_or_journal``). A step that knows only
    ``Unavailable`` falls back to the memory store, which holds nothing while Redis is in use.
    ``kind``: ``"reply"``, ``"denied"`` (a setting to fix) or ``"input"`` (nothing was sent).
    """

    def __init__(self, summary: str, kind: str) -> None:
        super().__init__(summary)
        self.kind = kind
