"""A named worker thread that runs one loop function until it is stopped: the output
tracks' model workers and the client's device writers (``client/sinks.py``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Worker:
    """Runs ``step()`` repeatedly in its own thread until ``stop()``, then ``on_exit()``
    once in that thread (where a device opened by the steps is released).

    ``step`` must return within a bounded time (it waits on a slot with a timeout)
    so that ``stop`` is prompt; it may call ``stop`` itself to end the loop. An
    exception in ``step`` is logged and the loop goes on: a model failure must never
    kill the media path.
    """

    def __init__(
        self, name: str, step: Callable[[], None], on_exit: Callable[[], None] | None = None
    ) -> None:
        self._step = step
        self._on_exit = on_exit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception:  # pragma: no cover - step functions catch their own errors
                    log.exception("worker %s step failed", self._thread.name)
        finally:
            if self._on_exit is not None:
                try:
                    self._on_exit()
                except Exception:
                    log.exception("worker %s failed to finish", self._thread.name)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop and wait for the thread (blocking: not for the event loop)."""
        self.request_stop()
        self.join(timeout)

    def request_stop(self) -> None:
        """Ask the loop to end after its current step; returns at once."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait (blocking) at most ``timeout`` for the thread (after a ``stop`` or a
        ``request_stop``, from here or from a step); True when it has ended."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()
