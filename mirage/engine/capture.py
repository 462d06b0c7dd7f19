"""Capture-time estimates from media timestamps, robust to bursts after a stall.

A frame's arrival time is a poor capture stamp: after a network stall the
delayed frames arrive together and would all look fresh. Instead we keep the
offset between our clock and the stream's own timestamps as the *minimum* of
(arrival − media time) over a sliding window — the least-delayed frame defines
it — and stamp each frame with media time + offset. Frames of a burst then carry
their true, older capture times and the playout stage can discard them.
"""

from __future__ import annotations

import collections


class CaptureClock:
    """Maps a stream's media time (seconds) to our monotonic clock."""

    def __init__(self, window_s: float = 10.0) -> None:
        self._window_s = window_s
        # Monotonic deque of (arrival, offset): offsets increase from left to right,
        # so the left end is the window's minimum.
        self._mins: collections.deque[tuple[float, float]] = collections.deque()

    def capture_time(self, arrival: float, media_s: float | None) -> float:
        """The capture time of a frame that arrived at ``arrival`` with media time
        ``media_s`` (None when the frame has no timestamp: arrival is used)."""
        if media_s is None:
            return arrival
        offset = arrival - media_s
        while self._mins and self._mins[-1][1] >= offset:
            self._mins.pop()
        self._mins.append((arrival, offset))
        while self._mins[0][0] < arrival - self._window_s:
            self._mins.popleft()
        # A stream that restarts its timestamps makes older minima meaningless.
        if abs(self._mins[0][1] - offset) > 5.0:
            self._mins.clear()
            self._mins.append((arrival, offset))
        return media_s + self._mins[0][1]
