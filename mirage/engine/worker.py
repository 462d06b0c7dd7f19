"""A named worker thread that runs one loop function until it is stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Worker:
    """Runs ``step()`` repeatedly in its own thread until ``stop()``.

    ``step`` must return within a bounded time (it waits on a slot with a timeout)
    so that ``stop`` is prompt. An exception in ``step`` is logged and the loop
    goes on: a model failure must never kill the media path.
    """

    def __init__(self, name: str, step: Callable[[], None]) -> None:
        self._step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # pragma: no cover - step functions catch their own errors
                log.exception("worker %s step failed", self._thread.name)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop and wait for the thread (blocking: not for the event loop)."""
        self.request_stop()
        self.join(timeout)

    def request_stop(self) -> None:
        """Ask the loop to end after its current step; returns at once."""
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait (blocking) at most ``timeout`` for the thread; True when it has ended."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()
