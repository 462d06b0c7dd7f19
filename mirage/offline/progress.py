"""A one-line progress bar for long jobs: done / total, rate and time left.

On a terminal the line is redrawn in place a few times a second; into a file or
a pipe (CI logs) a plain line is written every tenth of the job instead, so the
log stays short and readable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24


def clock_text(seconds: float) -> str:
    """``75`` → ``1:15``; ``3725`` → ``1:02:05``."""
    s = max(0, round(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Reports ``update(done)`` calls on ``stream``; ``total`` may be an estimate or None."""

    def __init__(
        self,
        stream: TextIO | None,
        total: int | None,
        unit: str = "frames",
        interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self.total = total if total and total > 0 else None
        self._unit = unit
        self._interval = interval_s
        self._clock = clock
        self._start = clock()
        self._last_draw = -float("inf")
        self._last_tenth = -1
        self._written = -1  # ``done`` of the last plain line
        self._tty = bool(stream is not None and stream.isatty())
        self.done = 0

    def line(self) -> str:
        """The current state as text (no line ending)."""
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = self.done / elapsed
        total = max(self.total, self.done) if self.total is not None else None
        if total is None:
            return f"{self.done} {self._unit}  {rate:.1f} fps  {clock_text(elapsed)}"
        share = self.done / total if total else 1.0
        filled = round(share * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        eta = (total - self.done) / rate if rate > 0 else float("nan")
        eta_text = clock_text(eta) if eta == eta else "?"
        return (
            f"[{bar}] {self.done}/{total} {self._unit} {share:4.0%}  {rate:.1f} fps  ETA {eta_text}"
        )

    def update(self, done: int) -> None:
        self.done = done
        if self._stream is None:
            return
        now = self._clock()
        if self._tty:
            if now - self._last_draw >= self._interval:
                self._last_draw = now
                self._stream.write("\r" + self.line() + "\x1b[K")
                self._stream.flush()
            return
        tenth = int(10 * done / self.total) if self.total else done // 250
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self._written = done
            self._stream.write(self.line() + "\n")
            self._stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self._stream is None:
            return
        if self._tty:
            self._stream.write("\r" + self.line() + "\x1b[K\n")
        elif self._written != self.done:
            self._stream.write(self.line() + "\n")
        self._stream.flush()
