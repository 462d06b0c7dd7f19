"""Pitch for RVC: f0 trackers (RMVPE, or pyworld's DIO shipped as a fallback), the
semitone shift and upstream's coarse mel quantisation, and a streaming cache.

Every tracker returns one f0 value (Hz, 0 = unvoiced) per 10 ms frame of 16 kHz audio,
frame ``k`` centred on sample ``160 k``: ``len(audio) // 160 + 1`` values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

RATE = 16000
HOP = 160  # samples per pitch frame (10 ms)
F0_MIN, F0_MAX = 50.0, 1100.0
_MEL_MIN = 1127.0 * np.log(1.0 + F0_MIN / 700.0)
_MEL_MAX = 1127.0 * np.log(1.0 + F0_MAX / 700.0)


class PitchTracker(Protocol):
    """16 kHz float32 audio → f0 per 10 ms frame (``len // 160 + 1`` values, Hz)."""

    name: str

    def __call__(self, audio: np.ndarray) -> np.ndarray: ...

    def segment(self, samples: int) -> int:
        """The analysis length to use for at least ``samples`` (it may prefer more)."""
        ...


def coarse_pitch(f0: np.ndarray) -> np.ndarray:
    """Upstream's quantisation: f0 (Hz) → mel scale over 50..1100 Hz → int bins 1..255.

    Unvoiced (0 Hz) and anything at or under 50 Hz map to 1.
    """
    mel = 1127.0 * np.log(1.0 + np.asarray(f0, dtype=np.float64) / 700.0)
    voiced = mel > 0
    mel[voiced] = (mel[voiced] - _MEL_MIN) * 254.0 / (_MEL_MAX - _MEL_MIN) + 1.0
    return np.rint(np.clip(mel, 1.0, 255.0)).astype(np.int64)


def shift(f0: np.ndarray, semitones: float) -> np.ndarray:
    """f0 moved by ``semitones`` (unvoiced zeros stay zero)."""
    return np.asarray(f0, dtype=np.float64) * 2.0 ** (semitones / 12.0)


def fill_unvoiced(f0: np.ndarray) -> np.ndarray:
    """Unvoiced frames take the f0 interpolated from their voiced neighbours, as upstream
    does before synthesis; all-unvoiced input is returned unchanged (stays silent)."""
    f0 = np.array(f0, dtype=np.float64)
    voiced = f0 > 0
    if voiced.any() and not voiced.all():
        idx = np.arange(len(f0))
        f0[~voiced] = np.interp(idx[~voiced], idx[voiced], f0[voiced])
    return f0


class WorldPitch:
    """pyworld DIO + StoneMask: no weights, about 1 ms per 160 ms block on a CPU core."""

    name = "dio"

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        import pyworld  # imported here: only this tracker needs it

        x = np.ascontiguousarray(audio, dtype=np.float64)
        f0, times = pyworld.dio(x, RATE, f0_floor=F0_MIN, f0_ceil=F0_MAX, frame_period=10.0)
        f0 = pyworld.stonemask(x, f0, times, RATE)
        return _fit(f0, len(x) // HOP + 1)

    def segment(self, samples: int) -> int:
        """DIO finds no voice at all in segments of 150 ms or less: give it at least 300 ms."""
        return max(samples, 300 * RATE // 1000)


class RmvpePitch:
    """RMVPE (``models/rmvpe/rmvpe.pt``): upstream's default and most robust tracker."""

    name = "rmvpe"

    def __init__(self, path: Path, device: torch.device) -> None:
        from mirage.models.voice.rvc.checkpoint import load_rmvpe

        model = load_rmvpe(path)  # WeightsMissing / BadCheckpoint name the file
        self.model = model.eval().to(device)
        self.device = device

    @torch.inference_mode()
    def __call__(self, audio: np.ndarray) -> np.ndarray:
        wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        f0 = self.model(wav.to(self.device))["f0"].cpu().numpy()
        return _fit(f0, len(audio) // HOP + 1)

    def segment(self, samples: int) -> int:
        """RMVPE pads its mel to 32 frames: fill them with real audio (upstream's 5120 rule)."""
        return 5120 * ((samples - 1) // 5120 + 1) - HOP


def make_tracker(rmvpe_path: Path, device: torch.device, method: str = "auto") -> PitchTracker:
    """``rmvpe`` when its weights exist (or ``method="rmvpe"`` insists), else DIO."""
    if method == "rmvpe" or (method == "auto" and rmvpe_path.is_file()):
        return RmvpePitch(rmvpe_path, device)
    if method in ("auto", "dio"):
        return WorldPitch()
    raise ValueError(f"unknown pitch method {method!r}; expected auto, rmvpe or dio")


def _fit(f0: np.ndarray, frames: int) -> np.ndarray:
    f0 = np.asarray(f0, dtype=np.float64).reshape(-1)[:frames]
    return np.pad(f0, (0, frames - len(f0)))


class StreamingPitch:
    """f0 for a sliding window of ``frames`` 10 ms frames, re-tracking only the newest audio.

    Each update tracks the last ``new_frames`` frames plus ``margin`` samples of older
    audio, drops the 3 oldest frames (too little left context) and the frame at the very
    end (centred past the audio), and writes the rest over the cache's newest entries: the
    frames from the previous update are re-estimated with more right context.
    """

    def __init__(self, tracker: PitchTracker, frames: int, margin: int = 800) -> None:
        self.tracker = tracker
        self.frames = frames
        self.margin = margin
        self.cache = np.zeros(frames, dtype=np.float64)

    def reset(self) -> None:
        self.cache[:] = 0.0

    def update(self, window: np.ndarray, new_frames: int) -> np.ndarray:
        """``window``: the converter's whole 16 kHz buffer (``frames * 160`` samples)."""
        if len(window) != self.frames * HOP:
            raise ValueError(f"window has {len(window)} samples, expected {self.frames * HOP}")
        self.cache = np.roll(self.cache, -new_frames)
        self.cache[-new_frames:] = 0.0
        length = min(self.tracker.segment(new_frames * HOP + self.margin), len(window))
        length -= length % HOP
        f0 = fill_unvoiced(self.tracker(window[-length:]))[3:-1]
        self.cache[-len(f0) :] = f0
        return self.cache.copy()
