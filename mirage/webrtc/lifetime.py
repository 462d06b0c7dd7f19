"""What every server-side peer connection's owner (a ``Session``, a ``WhepViewer``)
shares: its background tasks, the rules that end it, and a close that runs once.

It ends when the connection fails or closes, when it stays ``disconnected`` past
``grace_s`` (a brief network change recovers; a peer that vanished does not), and,
when asked, when it never connects within ``connect_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiortc import RTCPeerConnection

log = logging.getLogger(__name__)


class PeerLifetime:
    """The tasks and end of one peer connection's owner; ``close`` is the owner's."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        label: Callable[[], str],
        grace_s: float,
        close: Callable[[str], Awaitable[None]],
    ) -> None:
        self._pc = pc
        self._label = label  # for logs, e.g. "session 1a2b…"
        self._grace_s = grace_s
        self._close = close
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: asyncio.Future[None] | None = None
        self.closed_reason: str | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as one of the owner's tasks (cancelled when it closes)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def watch(self, connect_timeout_s: float | None = None) -> None:
        """Close on a failed/closed connection, or one still disconnected (or never
        connected) after its grace. Hook it before ``setRemoteDescription``."""
        pc = self._pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            log.info("%s: connection %s", self._label(), state)
            if state in ("failed", "closed"):
                self.close_soon(f"connection {state}")
            elif state == "disconnected":
                self.spawn(self._close_if_still("disconnected", self._grace_s))

        if connect_timeout_s is not None:
            self.spawn(self._close_if_still("new", connect_timeout_s))

    async def _close_if_still(self, state: str, after_s: float) -> None:
        await asyncio.sleep(after_s)
        if state == "new" and self._pc.connectionState != "connected":
            self.close_soon("never connected")
        elif self._pc.connectionState == state:
            self.close_soon(f"{state} past grace")

    def close_soon(self, reason: str) -> None:
        """Close from a callback that cannot await (a no-op once closing)."""
        if self._closing is None and self.closed_reason is None:
            self._closing = asyncio.ensure_future(self._close(reason))

    def begin_close(self, reason: str) -> bool:
        """The first call records ``reason``, cancels the owner's tasks (not the one
        calling) and returns True; every later call returns False."""
        if self.closed_reason is not None:
            return False
        self.closed_reason = reason
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        return True


__all__ = ["PeerLifetime"]
