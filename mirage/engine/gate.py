"""A voice gate: silence between words, so the converter never resynthesises the
room (WORLD turns any background into a broadband hiss).

A frame is speech when the suppressor's own voice-activity detector (WebRTC's, one
flag per 10 ms frame) says so *and* the cleaned frame stands ``margin_db`` above the
quietest frame of the last ``floor_ms`` (the room after suppression). The detector
alone fires for the first ~0.6 s of any background while it learns it (measured on
a fan: tests/test_voicechain.py); the level alone opens on a door or a keyboard.
The gate opens at once on a speech frame (a 1 ms ramp: no click) and, after the
last one, holds for ``hold_ms`` then fades out over ``fade_ms``, so word ends and
soft consonants are not cut.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

SHARE_FRAMES = 1000  # the open share is over the last 10 s of 10 ms frames


@dataclass(frozen=True)
class GateTiming:
    hold_ms: float = 200.0
    fade_ms: float = 50.0
    attack_ms: float = 1.0
    margin_db: float = 9.0
    floor_ms: float = 1500.0


SILENT_POWER = 1e-9  # -90 dBFS: a floor below this counts as this


class VoiceGate:
    """Gains frames of ``frame`` samples at ``rate`` by the detector's flags."""

    def __init__(self, rate: int, frame: int, timing: GateTiming = GateTiming()) -> None:
        self._frame = frame
        per_ms = rate / 1000
        self._hold = round(timing.hold_ms * per_ms)  # samples
        self._fade_step = 1.0 / max(1.0, timing.fade_ms * per_ms)
        self._attack_step = 1.0 / max(1.0, timing.attack_ms * per_ms)
        self._gain = 0.0
        self._since_speech = self._hold  # samples since the last speech frame
        self._recent: collections.deque[bool] = collections.deque(maxlen=SHARE_FRAMES)
        self._margin = 10 ** (timing.margin_db / 10)
        self._powers: collections.deque[float] = collections.deque(
            maxlen=max(1, round(timing.floor_ms * per_ms / frame))
        )
        self._open_frames = 0

    @property
    def open_share(self) -> float | None:
        """The share of recent frames in which the gate let anything through."""
        return self._open_frames / len(self._recent) if self._recent else None

    def __call__(self, frame: np.ndarray, speech: bool) -> np.ndarray:
        n = self._frame
        power = float(np.mean(np.square(frame, dtype=np.float64)))
        self._powers.append(power)
        floor = max(min(self._powers), SILENT_POWER)
        if speech and power > floor * self._margin:
            self._since_speech = 0
        if self._since_speech < self._hold:  # open (or opening)
            gains = np.minimum(1.0, self._gain + self._attack_step * np.arange(1, n + 1))
        else:  # closing (or closed)
            gains = np.maximum(0.0, self._gain - self._fade_step * np.arange(1, n + 1))
        self._since_speech = min(self._hold, self._since_speech + n)
        self._gain = float(gains[-1])
        is_open = bool(gains[0] > 0.0)
        if len(self._recent) == self._recent.maxlen and self._recent[0]:
            self._open_frames -= 1
        self._recent.append(is_open)
        self._open_frames += is_open
        if self._gain >= 1.0 and gains[0] >= 1.0:
            return frame
        if not is_open and self._gain == 0.0:
            return np.zeros_like(frame)
        return (frame * gains).astype(np.float32)
