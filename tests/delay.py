"""How late one signal is behind another, measured without asking the converter.

Shared by the voice tests and ``bench/voice.py``: the independent check of every
``latency_s`` a converter reports.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import stft

RATE = 16000


def measured_delay(x: np.ndarray, y: np.ndarray, most: int = 1600, hop: int = 8) -> float:
    """The lag (samples) at which y's log spectrogram (0-4 kHz, 16 ms windows every
    0.5 ms) best matches x's: a delay estimate that does not know ``latency_s``.

    Every band's onsets and offsets vote, so the peak is sharp enough for 2 ms (a
    single energy envelope drifts by 3 ms between presets).
    """
    n = min(len(x), len(y))

    def log_spectrogram(s: np.ndarray) -> np.ndarray:
        _, _, z = stft(s[:n].astype(np.float64), RATE, nperseg=256, noverlap=256 - hop)
        power = np.log(np.abs(z[2:64]) ** 2 + 1e-8)
        return power - power.mean(axis=1, keepdims=True)

    sx, sy = log_spectrogram(x), log_spectrogram(y)
    frames = sx.shape[1]
    score = np.array(
        [np.sum(sx[:, : frames - k] * sy[:, k:]) / (frames - k) for k in range(most // hop)]
    )
    i = int(np.argmax(score))
    step = 0.0
    if 0 < i < len(score) - 1:  # parabolic interpolation of the peak
        a, b, c = score[i - 1 : i + 2]
        step = 0.5 * (a - c) / (a - 2 * b + c)
    return (i + step) * hop
