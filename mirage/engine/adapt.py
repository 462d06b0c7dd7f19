"""Quality levels and the controller that moves a session between them.

Cheaper quality comes first, then fewer frames, then fewer pixels (the order the
mission sets). The controller watches per-frame processing time against the
current level's frame budget: sustained overload (``down_after_s``) steps down;
sustained headroom *at the level above* (its cost estimated from this one) for
``up_after_s`` steps up. A level that overloads again soon after a step up waits
twice as long before the next try, so the controller never oscillates.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    name: str
    size: int
    fps: float
    quality: str  # backend hint: "high" | "fast"

    @property
    def budget_s(self) -> float:
        return 1.0 / self.fps


LEVELS: tuple[Level, ...] = (
    Level("512@20", 512, 20.0, "high"),
    Level("512@20-fast", 512, 20.0, "fast"),
    Level("512@18-fast", 512, 18.0, "fast"),
    Level("384@18-fast", 384, 18.0, "fast"),
    Level("256@15-fast", 256, 15.0, "fast"),
)

FAST_QUALITY_SAVING = 0.75  # a "fast" frame is assumed to cost this share of a "high" one


def relative_cost(frm: Level, to: Level) -> float:
    """How much a frame at ``to`` costs relative to one at ``frm`` (pixels and quality)."""
    pixels = (to.size / frm.size) ** 2
    quality = {"high": 1.0, "fast": FAST_QUALITY_SAVING}
    return pixels * quality[to.quality] / quality[frm.quality]


def find_level(name_or_index: str | int, levels: tuple[Level, ...] = LEVELS) -> int:
    """A level by name ("384@18-fast") or index; ValueError naming the choices."""
    if isinstance(name_or_index, int) or str(name_or_index).isdigit():
        index = int(name_or_index)
        if 0 <= index < len(levels):
            return index
    for i, level in enumerate(levels):
        if level.name == name_or_index:
            return i
    names = ", ".join(level.name for level in levels)
    raise ValueError(
        f"unknown quality level {name_or_index!r}; choose auto, {names} or 0-{len(levels) - 1}"
    )


@dataclass
class Move:
    level: Level
    direction: str  # "down" | "up"
    reason: str


class QualityController:
    def __init__(
        self,
        levels: tuple[Level, ...] = LEVELS,
        *,
        pinned: int | None = None,
        down_after_s: float = 2.0,
        up_after_s: float = 5.0,
        overload: float = 0.9,
        headroom: float = 0.7,
        window_s: float = 1.0,
    ) -> None:
        self.levels = levels
        self.index = pinned if pinned is not None else 0
        self.pinned = pinned
        self.down_after_s = down_after_s
        self.up_after_s = up_after_s
        self.overload = overload
        self.headroom = headroom
        self.window_s = window_s
        self._times: collections.deque[tuple[float, float]] = collections.deque()
        self._over_since: float | None = None
        self._room_since: float | None = None
        self._wait_up: dict[int, float] = {}  # per level: how long headroom must last
        self._last_up: tuple[int, float] | None = None
        self.moves: list[Move] = []

    @property
    def level(self) -> Level:
        return self.levels[self.index]

    def pin(self, index: int | None) -> None:
        """Hold ``index`` (None: back to automatic)."""
        self.pinned = index
        if index is not None:
            self.index = index
        self._over_since = self._room_since = None
        self._times.clear()

    def record(self, processing_s: float, now: float) -> Move | None:
        """One processed frame took ``processing_s``; maybe change level."""
        self._times.append((now, processing_s))
        while self._times and self._times[0][0] < now - self.window_s:
            self._times.popleft()
        if self.pinned is not None or len(self._times) < 3:
            return None
        mean = sum(t for _, t in self._times) / len(self._times)
        level = self.level
        if mean > self.overload * level.budget_s:
            self._room_since = None
            self._over_since = self._over_since if self._over_since is not None else now
            if now - self._over_since >= self.down_after_s and self.index < len(self.levels) - 1:
                reason = f"frames take {mean * 1000:.0f} ms, budget {level.budget_s * 1000:.0f} ms"
                recent = self._last_up is not None and now - self._last_up[1] < 15.0
                if recent and self._last_up is not None and self._last_up[0] == self.index:
                    # Overloaded right after stepping up: make the next try wait longer.
                    below = self.index + 1
                    self._wait_up[below] = 2 * self._wait_up.get(below, self.up_after_s)
                return self._move(self.index + 1, "down", reason, now)
            return None
        self._over_since = None
        if self.index == 0:
            return None
        above = self.levels[self.index - 1]
        estimate = mean * relative_cost(level, above)
        if estimate < self.headroom * above.budget_s:
            self._room_since = self._room_since if self._room_since is not None else now
            if now - self._room_since >= self._wait_up.get(self.index, self.up_after_s):
                reason = f"~{estimate * 1000:.0f} ms expected at {above.name}"
                self._last_up = (self.index - 1, now)
                return self._move(self.index - 1, "up", reason, now)
        else:
            self._room_since = None
        return None

    def _move(self, index: int, direction: str, reason: str, now: float) -> Move:
        self.index = index
        self._over_since = self._room_since = None
        self._times.clear()
        move = Move(self.levels[index], direction, reason)
        self.moves.append(move)
        return move
