"""The clients of a target (``_redis.backend`` builds them): one blocking client, and one
asyncio client per event loop (closed when its loop shuts down, forgotten when its loop is gone
or in a forked child).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, Callable
from typing import Any

from cache_service._redis.backend import build_async_client, build_sync_client
from cache_service._runtime.target_state import TargetState

__all__ = ["Clients"]


class Clients(TargetState):
    """Builds, lends and closes the target's clients."""

    def sync_client(self) -> Any:
        """The blocking client (built on first use)."""
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                self._client = build_sync_client(self.location, self.options)
            return self._client

    def _async_client(self) -> Any:
        loop = asyncio.get_running_loop()
        last = self._last_aclient  # one tuple, replaced atomically: safe across threads
        if last[0] is loop:
            return last[1]
        client = self._aclients.get(loop)
        if client is None:
            with self._client_lock:
                self._drop_async_clients(lambda old: old.is_closed())
                client = self._aclients.get(loop)
                if client is None:
                    client = self._aclients[loop] = build_async_client(self.location,
                                                                       self.options)
                    closer = self._aclosers[loop] = self._close_at_loop_end(loop, client)
                    with contextlib.suppress(StopIteration):  # to its ``yield``: registered
                        closer.asend(None).send(None)
        self._last_aclient = (loop, client)
        return client

    def _drop_async_clients(self, which: Callable[[asyncio.AbstractEventLoop], bool]) -> None:
        """Forget the clients of the loops ``which`` names (those closed).

        Their closers are finished here, synchronously: left to the collector, each would ask
        its closed loop to run it and fail. The connections cannot be closed without their
        loop; once forgotten, they are garbage and asyncio closes their sockets when it is
        collected.
        """
        for loop in [loop for loop in self._aclients if which(loop)]:
            closer = self._aclosers.get(loop)
            if closer is not None:
                with contextlib.suppress(StopIteration):
                    closer.aclose().send(None)
            self._aclients.pop(loop, None)
            self._aclosers.pop(loop, None)
        last = self._last_aclient[0]
        if last is not None and which(last):
            self._last_aclient = (None, None)

    async def _close_at_loop_end(self, loop: asyncio.AbstractEventLoop,
                                 client: Any) -> AsyncGenerator[None, None]:
        """Suspends until finalized (``aclose()``), then forgets and closes ``loop``'s client
        (only forgets it when the loop is closed or the process is a fork: nothing to await).

        Forgetting matters: the client's streams reference the loop, so holding it would never
        let a finished loop go.
        """
        pid = os.getpid()
        try:
            yield
        finally:
            if self._aclients.get(loop) is client:
                self._aclients.pop(loop, None)
                self._aclosers.pop(loop, None)
            if self._last_aclient[0] is loop:
                self._last_aclient = (None, None)
            if not loop.is_closed() and os.getpid() == pid:
                await client.aclose()

    async def aclose(self) -> None:
        """Close the asyncio client of the running loop (at the latest, ``asyncio.run`` does
        it when the loop shuts down)."""
        closer = self._aclosers.get(asyncio.get_running_loop())
        if closer is not None:
            await closer.aclose()

    def close(self) -> None:
        """Close the sync client's connections; stop the background threads (tracking, the
        recoverer: the next call that needs one starts it again)."""
        self.recovery.stop()
        if self.tracker is not None:
            self.tracker.stop()
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
