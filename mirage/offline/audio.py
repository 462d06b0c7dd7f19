"""A whole voice track through a streaming converter, with its delay taken back out.

Live, the converter's algorithmic delay (``latency_s``) is paid and the video is
held back to match. Offline there is no deadline, so the first ``latency_s`` of
converter output (its fill) is dropped and the tail is flushed with silence:
output sample n stands for input sample n, and the track keeps its length.

Resampling uses soxr's streaming resampler, which delivers late but time-aligned
(output sample k is the input at time k / rate), so positions map across rates
by the rates alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import soxr

from mirage.models.base import VoiceConverter

log = logging.getLogger(__name__)


class _Stream:
    """Streaming resampler, or the identity when the rates match."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self._soxr = (
            None
            if rate_in == rate_out
            else soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ")
        )

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self._soxr is None:
            return x
        out: np.ndarray = self._soxr.resample_chunk(x, last=last)
        return out


class AlignedVoice:
    """Mono float32 at ``rate_in`` → converted mono float32 at ``rate_out``, aligned.

    ``push`` returns whatever converted audio is ready; ``finish`` returns the rest,
    so that the total is exactly the input's duration at ``rate_out``. A block the
    converter fails on is replaced by its input (as live), counted in ``errors``.
    """

    def __init__(
        self,
        converter: VoiceConverter,
        rate_in: int,
        rate_out: int,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.converter = converter
        self.rate_in, self.rate_out = rate_in, rate_out
        self.errors = 0
        self._on_error = on_error
        self._to_model = _Stream(rate_in, converter.sample_rate)
        self._to_output = _Stream(converter.sample_rate, rate_out)
        self._pending = np.zeros(0, np.float32)  # model-rate input short of a block
        self._fill = round(converter.latency_s * converter.sample_rate)  # its delay, dropped
        self._skip = self._fill  # fill still to drop
        self._fed = 0  # model-rate samples given to the converter (padding included)
        self._taken = 0  # input samples pushed
        self._emitted = 0  # output samples returned
        self._finished = False

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Take input samples; return the converted output that is ready (may be empty)."""
        if self._finished:
            raise RuntimeError("push after finish")
        x = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        self._taken += len(x)
        return self._emit(self._blocks(self._to_model(x)))

    def finish(self) -> np.ndarray:
        """Flush with silence and return the rest, up to the input's exact duration."""
        if self._finished:
            return np.zeros(0, np.float32)
        self._finished = True
        rest = self._blocks(self._to_model(np.zeros(0, np.float32), last=True))
        needed = round(self._taken * self.converter.sample_rate / self.rate_in) + self._fill
        size = self.converter.block_size
        missing = needed - self._fed - len(self._pending)
        if missing > 0 or len(self._pending):
            pad = max(missing, 0) + (-(len(self._pending) + max(missing, 0)) % size)
            rest = np.concatenate([rest, self._blocks(np.zeros(pad, np.float32))])
        out = np.concatenate([self._to_output(rest), self._to_output(rest[:0], last=True)])
        total = round(self._taken * self.rate_out / self.rate_in)
        out = out[: max(0, total - self._emitted)]
        if len(out) < total - self._emitted:  # a resampler delivered short: pad the end
            out = np.concatenate([out, np.zeros(total - self._emitted - len(out), np.float32)])
        self._emitted += len(out)
        return out

    def _blocks(self, x: np.ndarray) -> np.ndarray:
        """Append model-rate input; convert every whole block; drop the converter's fill."""
        pending = np.concatenate([self._pending, x]) if len(self._pending) else x
        size = self.converter.block_size
        whole = len(pending) // size * size
        parts = [self._convert(pending[i : i + size]) for i in range(0, whole, size)]
        self._pending = pending[whole:]
        self._fed += whole
        out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if self._skip:
            cut = min(self._skip, len(out))
            out, self._skip = out[cut:], self._skip - cut
        return out

    def _convert(self, block: np.ndarray) -> np.ndarray:
        block = np.ascontiguousarray(block, dtype=np.float32)
        try:
            out = np.asarray(self.converter.convert(block), dtype=np.float32)
            if out.shape != block.shape:
                raise ValueError(f"converter returned {out.shape}, expected {block.shape}")
        except Exception as exc:
            self.errors += 1
            if self._on_error is not None:
                self._on_error(exc)
            return block
        return out

    def _emit(self, model_out: np.ndarray) -> np.ndarray:
        out = self._to_output(model_out)
        self._emitted += len(out)
        return out
