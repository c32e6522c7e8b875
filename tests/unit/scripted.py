"""A driver that runs an operation over a script instead of a Redis client (no sockets).

The model is httpcore's mock backend: the test says what "Redis" answers, in order, and the
operation under test cannot tell the difference. ``ScriptedDriver.run`` does what
``Target.run`` does with a request (send the reply, or throw the failure in) and records every
request and effect the operation yields, so a test can assert on the exact conversation.

A script step is one of:

- a reply value (``None``, bytes, an int, a list...), sent as the request's reply;
- a protocol exception (``Unavailable``, ``ReplyError``, ``WrongType``): thrown in as it is,
  the breaker untouched (what the real driver throws for *this request only*);
- any other exception (a redis-py error): accounted by ``Target.failed`` exactly as the real
  driver does (an outage opens the breaker; an error reply is counted), and what that returns
  is thrown in;
- a callable: called with the request, its result used as above (e.g. a reply computed from
  the payload being written).

Effects (``loading.LOAD``, ``Sleep``, ``Wait``) are not Redis requests: they are recorded and
handed to ``effects`` (by default performed as ``Target.run`` would, except that ``Sleep``
does not sleep). Unlike ``Target.run`` it never retries a request on a fresh connection (a
script has no pooled connections) and times nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from cache_service._ops.loading import Sleep
from cache_service._ops.protocol import Op, Unavailable, WrongType
from cache_service._ops.requests import REQUESTS
from cache_service._runtime.target import Target
from cache_service.core import ServiceCore

T = TypeVar("T")

__all__ = ["Make", "ScriptedDriver", "UnscriptedRequest"]


class UnscriptedRequest(AssertionError):
    """The operation asked for more than the script answers."""


def perform(effect: Any, loader: Callable[[], Any] | None) -> Any:
    """The default effect handler: what ``Target.run`` does, without sleeping."""
    if isinstance(effect, Sleep):
        return None
    return effect.perform(loader)


class ScriptedDriver:
    """Runs operations of one target against a script of replies, recording what they ask."""

    def __init__(self, target: Target, script: Iterable[Any] = ()) -> None:
        self.target = target
        self.script: list[Any] = list(script)
        self.requests: list[Any] = []  # the named requests of ``_ops.requests``
        self.effects: list[Any] = []

    def answer(self, *steps: Any) -> ScriptedDriver:
        """Append ``steps`` to the script (chainable)."""
        self.script.extend(steps)
        return self

    @property
    def exhausted(self) -> bool:
        """Whether every scripted step was used."""
        return not self.script

    def run(self, op: Op[T], loader: Callable[[], Any] | None = None,
            effects: Callable[[Any, Callable[[], Any] | None], Any] = perform) -> T:
        """Drive ``op`` to completion; the script answers its requests in order."""
        try:
            request = op.send(None)
            while True:
                reply: Any = None
                error: BaseException | None = None
                if type(request) in REQUESTS:
                    self.requests.append(request)
                    try:
                        reply = self._reply(request)
                    except (Unavailable, WrongType) as exc:  # thrown in as it is
                        error = exc
                    except UnscriptedRequest:
                        raise
                    except Exception as exc:  # a client's failure: accounted, as Target.run
                        error = self.target.failed(exc)
                else:  # an effect: what it raises (a loader's error) is thrown in as it is
                    self.effects.append(request)
                    try:
                        reply = effects(request, loader)
                    except Exception as exc:
                        error = exc
                request = op.send(reply) if error is None else op.throw(error)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            op.close()

    def _reply(self, request: tuple[Any, ...]) -> Any:
        if not self.script:
            raise UnscriptedRequest(f"no scripted reply for {_shown(request)}")
        step = self.script.pop(0)
        if callable(step) and not isinstance(step, type):
            step = step(request)
        if isinstance(step, BaseException):
            raise step
        return step


def _shown(request: Any) -> str:
    """A request for an assertion message, long fields shortened."""
    fields = ", ".join(repr(a)[:60] for a in request)
    return f"{type(request).__name__}({fields})"


# The ``make_core`` fixture (conftest.py): a fresh core on its own target, with its driver.
Make = Callable[..., tuple[ServiceCore, ScriptedDriver]]
