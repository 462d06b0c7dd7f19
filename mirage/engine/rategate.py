"""Which camera frames the face worker takes, at the quality level's frame rate.

The camera sends 30 fps; a level may ask for 20. The worker used to sleep on a
timer of its own and then take the newest frame in its slot, which had been
waiting there for whatever part of a camera interval the two clocks' phase left:
half of one (17 ms at 30 fps) on average, all of one at the p95, on every frame,
and the playout delay follows that p95. Deciding as each frame *arrives* costs
nothing: a frame is taken at once when its place on a grid of the level's rate
has come (or is less than half a grid step away: 30 fps in, 20 out takes two of
every three frames the moment they arrive) and dropped when it comes sooner.
The grid advances one step per frame taken, so the rate stays the level's on
average; a frame taken after its slot restarts the grid from its arrival (a slow
model or a stall does not earn a burst afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass

#: A frame this share of a grid step early is still taken (less than 1, so that the
#: rate never exceeds the level's; 0.5 takes 20 of 30 fps with no wait at all).
EARLY_SHARE = 0.5


@dataclass
class FrameRateGate:
    """Admits arriving frames at most at ``1 / interval_s`` per second on average."""

    next_s: float = float("-inf")  # the grid's next slot (time.monotonic)

    def admit(self, arrival: float, interval_s: float) -> bool:
        """Whether the frame that arrived at ``arrival`` should be worked on (if so,
        the grid moves one ``interval_s`` on)."""
        if arrival < self.next_s - EARLY_SHARE * interval_s:
            return False
        self.next_s = max(self.next_s, arrival) + interval_s
        return True
