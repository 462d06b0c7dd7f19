"""Streaming resamplers for the audio path, chosen for latency.

soxr's streaming resampler works in internal blocks and so holds back a varying
6-37 ms of audio per conversion, which a 16 kHz voice backend pays twice (48 kHz →
16 kHz → 48 kHz). For the integer ratios that path uses we run a windowed-sinc FIR
ourselves: it holds back only its group delay (1 ms at 48 kHz) and delivers every
sample as soon as it can be computed. Other ratios fall back to soxr.
"""

from __future__ import annotations

import numpy as np
import soxr
from scipy.signal import firwin

TAPS_PER_PHASE = 32
KAISER_BETA = 8.0  # ≈ 80 dB stop band


class FirResampler:
    """Up or down by an integer factor, stateful across chunks."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in % rate_out == 0:
            self.up, self.down = 1, rate_in // rate_out
        elif rate_out % rate_in == 0:
            self.up, self.down = rate_out // rate_in, 1
        else:
            raise ValueError(f"{rate_in} → {rate_out} Hz is not an integer ratio")
        factor = max(self.up, self.down)
        taps = TAPS_PER_PHASE * factor + 1
        # Cut below the lower rate's Nyquist frequency; gain `up` restores the level
        # that zero-stuffing spreads out.
        h = firwin(taps, 0.92 / factor, window=("kaiser", KAISER_BETA)) * self.up
        self._h = h.astype(np.float32)
        self._history = np.zeros(taps - 1, np.float32)  # at the high (filtering) rate
        # A symmetric FIR delays its content by half its length at the filtering rate.
        self.delay_s = (taps - 1) / 2 / (rate_in * self.up)
        self._phase = 0  # decimation: offset of the next kept sample in the filtered stream

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.up > 1:
            stuffed = np.zeros(len(x) * self.up, np.float32)
            stuffed[:: self.up] = x
            x = stuffed
        buf = np.concatenate([self._history, x])
        self._history = buf[len(buf) - len(self._history) :]
        filtered = np.convolve(buf, self._h, mode="valid").astype(np.float32)
        if self.down == 1:
            return filtered
        out = filtered[self._phase :: self.down]
        self._phase = (self._phase - len(filtered)) % self.down
        return out


class SoxrResampler:
    """soxr for ratios the FIR path does not cover (e.g. 44.1 kHz)."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self._stream = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ")
        self.delay_s = 0.0  # soxr holds samples back instead: what comes out is aligned

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self._stream.resample_chunk(np.asarray(x, dtype=np.float32))
        return out


class Resampler:
    """``rate_in`` → ``rate_out``: identity, integer-ratio FIR, or soxr."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.rate_in, self.rate_out = rate_in, rate_out
        self._impl: FirResampler | SoxrResampler | None = None
        if rate_in != rate_out:
            integer = rate_in % rate_out == 0 or rate_out % rate_in == 0
            self._impl = (FirResampler if integer else SoxrResampler)(rate_in, rate_out)

    @property
    def delay_s(self) -> float:
        """How late the content comes out (the FIR's group delay: 1 ms at 48 kHz)."""
        return 0.0 if self._impl is None else self._impl.delay_s

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x if self._impl is None else self._impl(x)
