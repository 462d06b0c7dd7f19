"""A FIFO bounded in items or in seconds of media that drops its oldest item.

The one bounded buffer on every audio hand-off: the server's inbox in front of the
voice worker (``tracks/audio.py``) and every fan-out tap (``tracks/fanout.py``, used
by the server's outputs and the client's hubs). Never blocks, never grows past its
bound, and always keeps the newest item. Not thread-safe: a caller that shares it
between threads holds its own lock.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

#: Rounding slack, so that three 100 ms blocks fit in 300 ms (0.1 + 0.1 + 0.1 > 0.3).
_EPS_S = 1e-9


class DropOldest(Generic[T]):
    """At most ``max_items`` items and at most ``max_s`` seconds (``seconds_of(item)``
    each); ``append`` past either bound drops from the front and says how many."""

    def __init__(
        self,
        *,
        max_items: int | None = None,
        max_s: float | None = None,
        seconds_of: Callable[[T], float] | None = None,
    ) -> None:
        if max_items is None and max_s is None:
            raise ValueError("a DropOldest needs a bound: max_items or max_s")
        if max_s is not None and seconds_of is None:
            raise ValueError("max_s needs seconds_of")
        self._items: collections.deque[T] = collections.deque()
        self._max_items = max_items
        self._max_s = max_s
        self._seconds_of = seconds_of
        self.seconds = 0.0  # media held
        self.dropped = 0  # all drops so far

    def append(self, item: T) -> int:
        """Add ``item`` at the back; the number of oldest items dropped to make room."""
        self._items.append(item)
        if self._seconds_of is not None:
            self.seconds += self._seconds_of(item)
        dropped = 0
        while len(self._items) > 1 and self._over():
            self.popleft()
            dropped += 1
        self.dropped += dropped
        return dropped

    def _over(self) -> bool:
        if self._max_items is not None and len(self._items) > self._max_items:
            return True
        return self._max_s is not None and self.seconds > self._max_s + _EPS_S

    def popleft(self) -> T:
        item = self._items.popleft()
        if self._seconds_of is not None:
            self.seconds = max(0.0, self.seconds - self._seconds_of(item))
        return item

    def take_all(self) -> list[T]:
        items = list(self._items)
        self.clear()
        return items

    def clear(self) -> None:
        self._items.clear()
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def __getitem__(self, index: int) -> T:
        return self._items[index]
