"""A bounded, thread-safe line of rendered frames waiting for their playout time.

Video is usually faster than voice, so finished video frames wait here until
capture time + playout delay. The line holds at most ``capacity`` frames; when a
newer frame is due, the older due ones are skipped (counted): a frame that
missed its slot is dropped, never queued behind.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Stamped(Protocol):
    capture: float


T = TypeVar("T", bound=Stamped)


class DelayLine(Generic[T]):
    def __init__(self, capacity: int) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._capacity = capacity
        self._lock = threading.Lock()
        self.overflowed = 0  # dropped because the line was full
        self.skipped = 0  # dropped because a newer frame was due too

    def put(self, item: T) -> bool:
        """Append; return True when the oldest frame had to go to make room."""
        with self._lock:
            self._items.append(item)
            if len(self._items) > self._capacity:
                self._items.popleft()
                self.overflowed += 1
                return True
            return False

    def take_due(
        self,
        now: float,
        due: Callable[[float], float],
        stale: Callable[[T], bool] | None = None,
    ) -> tuple[T | None, int]:
        """The newest frame whose due time has come, and how many others were dropped:
        older due ones, and the chosen one too when ``stale(frame)`` says so."""
        with self._lock:
            chosen: T | None = None
            skipped = 0
            while self._items and due(self._items[0].capture) <= now:
                if chosen is not None:
                    skipped += 1
                chosen = self._items.popleft()
            if chosen is not None and stale is not None and stale(chosen):
                chosen = None
                skipped += 1
            self.skipped += skipped
            return chosen, skipped

    def next_capture(self) -> float | None:
        with self._lock:
            return self._items[0].capture if self._items else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
