"""Audio frames as numbers: any aiortc/PyAV frame to mono samples, for the voice track,
the client's virtual microphone and recorder, and the measuring probe (numpy only)."""

from __future__ import annotations

import numpy as np
from av import AudioFrame


def to_mono_float(frame: AudioFrame) -> np.ndarray:
    """Any aiortc/PyAV audio frame → mono float32 in [-1, 1] at the frame's rate."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    planar = frame.format.is_planar
    samples = data.reshape(channels, -1).T if planar else data.reshape(-1, channels)
    mono = samples.astype(np.float32).mean(axis=1)
    if data.dtype == np.int16:
        mono /= 32768.0
    elif data.dtype == np.int32:
        mono /= 2147483648.0
    return mono


def to_s16_mono(frame: AudioFrame) -> np.ndarray:
    """Any audio frame → int16 mono samples."""
    return (np.clip(to_mono_float(frame), -1.0, 1.0) * 32767.0).astype(np.int16)
