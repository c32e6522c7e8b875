"""Stand-in for the target of a ready-made service whose ``REDIS_URL`` is invalid.

``import cache_service`` builds ``api_cache``/``user_cache``/``session_cache`` (and their async
twins) from ``REDIS_URL``. A bad value must not make the import raise, so such a service keeps
the ``ConfigurationError`` and gets this object as its target and location: every use of the
service raises that error, while ``repr()`` and the pure properties keep working. The hot path
stays as it is (a method reaches its target first, and the first attribute it asks for raises).
"""

from __future__ import annotations

from typing import Any, NoReturn, cast

from cache_service._runtime.target import Target
from cache_service.config import Location
from cache_service.errors import ConfigurationError

__all__ = ["unconfigured"]


class Unconfigured:
    """Raises the kept ConfigurationError on any use, except describing and closing."""

    __slots__ = ("_message",)

    def __init__(self, error: ConfigurationError) -> None:
        self._message = str(error)

    def __getattr__(self, name: str) -> NoReturn:
        # A fresh exception per use: one instance raised from several threads would share
        # (and keep growing) its traceback.
        raise ConfigurationError(self._message)

    def __repr__(self) -> str:
        return "<Unconfigured: invalid REDIS_URL>"

    def describe(self) -> str:
        """What ``repr()`` and ``.location`` show (no secrets: the URL is not repeated)."""
        return "<invalid REDIS_URL>"

    def close(self) -> None:
        """Nothing was ever opened: closing is a no-op, so shutdown code never raises."""

    async def aclose(self) -> None:
        """Nothing was ever opened: closing is a no-op, so shutdown code never raises."""


def unconfigured(error: ConfigurationError) -> tuple[Location, Target]:
    """The (location, target) pair of a service that must raise ``error`` when used."""
    stand_in: Any = Unconfigured(error)
    return cast(Location, stand_in), cast(Target, stand_in)
