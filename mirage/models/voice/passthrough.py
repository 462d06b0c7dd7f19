"""The microphone unchanged, at the track's own rate so no resampling touches it."""

from __future__ import annotations

import numpy as np

from mirage.models.base import VoiceConverter


class PassthroughConverter(VoiceConverter):
    """Returns each block as it came: 20 ms at 48 kHz, no added delay."""

    def __init__(self, sample_rate: int = 48000, block_ms: float = 20.0) -> None:
        self.sample_rate = sample_rate
        self.block_size = round(sample_rate * block_ms / 1000)
        self.latency_s = 0.0

    def convert(self, block: np.ndarray) -> np.ndarray:
        return block
