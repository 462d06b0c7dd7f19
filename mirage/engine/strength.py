"""How hard to suppress: the input's SNR, estimated frame by frame, switches the
noise suppressor between full strength and its bypass, in a crossfade.

Why: on speech with no noise at all WebRTC's suppressor still reshapes the voice
and the converter magnifies it (DNSMOS OVRL -0.2, below); such an input should
reach the converter as it is. The estimate is minimum statistics on the 10 ms
frames: the noise floor is the quietest smoothed frame of the last ``floor_s``,
the speech level the loudest of the last ``level_s``; their ratio is the SNR.
From ``clean_db`` up the suppressor is bypassed, from ``noisy_db`` down it works
in full, between it keeps its last choice (hysteresis). The strength moves at
most one full sweep per ``release_s`` towards the bypass and per ``attack_s``
back (noise that starts is suppressed soon), in a per-sample ramp: no click. It
starts at full strength, so background heard before any speech is suppressed.

The numbers were chosen on the bench's material (bench/suppressor_strength.py,
bench/voice_variants.py, docs/benchmarks.md): clean speech over digital silence
reads 67-80 dB; with a -70 dBFS hiss floor 50 dB, -60 dBFS 40 dB; babble, music
and a fan at 30 dB SNR 39-46 dB, at 20 dB and below under 37 dB. Only the first
is bypassed. The suppressor harms speech with no floor at all (after dsp, six
block phases: 2.46 at full strength against 2.66 bypassed), not speech over a
-60/-70 dBFS floor nor at 30 dB SNR, where it gains. A strength in between
(first tried: linear in dB) wandered with the estimate and scored worse than
either end (2.44 against 2.65-2.79 over a -70 dBFS floor), hence the switch. A
floor kept 1.5 s read continuous clean speech as 22 dB (its quietest frames
between two pauses); 3 s spans a pause.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

SILENT_POWER = 1e-10  # -100 dBFS: quieter frames count as this


@dataclass(frozen=True)
class StrengthTiming:
    noisy_db: float = 50.0  # at or below: suppress in full
    clean_db: float = 55.0  # at or above: bypass; between, keep the last choice
    floor_s: float = 3.0
    level_s: float = 3.0
    smooth: float = 0.5  # one-pole smoothing of frame powers (~15 ms at 10 ms frames)
    release_s: float = 1.0
    attack_s: float = 0.2


class SuppressionStrength:
    """Per 10 ms frame of input: the suppressor's strength for each of its samples
    (1: the suppressor's output, 0: the bypass), and the SNR estimate behind it."""

    def __init__(self, frame: int, rate: int, timing: StrengthTiming = StrengthTiming()) -> None:
        frames_per_s = rate / frame
        self._timing = timing
        self._floors: collections.deque[float] = collections.deque(
            maxlen=max(1, round(timing.floor_s * frames_per_s))
        )
        self._levels: collections.deque[float] = collections.deque(
            maxlen=max(1, round(timing.level_s * frames_per_s))
        )
        self._down = 1.0 / max(1.0, timing.release_s * frames_per_s)  # per frame
        self._up = 1.0 / max(1.0, timing.attack_s * frames_per_s)
        self._ramp = np.arange(1, frame + 1, dtype=np.float32) / frame
        self._power = 0.0
        self._bypass = False
        self.value = 1.0  # the strength at the end of the last frame
        self.snr_db = 0.0

    def target(self, snr_db: float) -> float:
        """The strength to move to: 0 (bypass) once the SNR reaches ``clean_db``,
        1 once it falls to ``noisy_db``; between, the last choice (hysteresis)."""
        if snr_db >= self._timing.clean_db:
            self._bypass = True
        elif snr_db <= self._timing.noisy_db:
            self._bypass = False
        return 0.0 if self._bypass else 1.0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        power = float(np.mean(np.square(frame, dtype=np.float64)))
        a = self._timing.smooth
        self._power = a * self._power + (1 - a) * max(power, SILENT_POWER)
        self._floors.append(self._power)
        self._levels.append(self._power)
        self.snr_db = 10 * np.log10(max(self._levels) / min(self._floors))
        goal = self.target(self.snr_db)
        start = self.value
        step = np.clip(goal - start, -self._down, self._up)
        self.value = float(start + step)
        return (start + step * self._ramp).astype(np.float32)
