"""The embedded default voice: streaming pitch and formant shift with WORLD.

Why WORLD (pyworld) and not PSOLA/LPC: WORLD splits speech into F0, a smooth
spectral envelope and aperiodicity, so pitch (scale F0) and formants (warp the
envelope's frequency axis) are changed independently and cleanly over the whole
-12..+12 semitone range, and the robot (flat F0) and whisper (no voicing)
voices fall out for free. TD-PSOLA is cheaper but needs reliable streaming
pitch marks and turns rough beyond about +-7 semitones; LPC envelopes are
peakier and shift less gracefully. WORLD's costly parts are avoided: F0 comes
from DIO + StoneMask (Harvest is several times slower), and CheapTrick/D4C run
only on the frames of the newest block, not on the context.

Streaming: each block is analysed together with ``_CONTEXT_MS`` of history and
resynthesised; the synthesis restarts its pulse phase every block, so blocks
are joined with SOLA (:class:`~mirage.models.voice.sola.SolaStream`). The
stream lags the input by ``latency_s`` = lookahead + crossfade + search
(25 ms) on top of the caller's block buffering.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np

from mirage.models.base import BadInput
from mirage.models.voice.presets import VoiceParams, presets, resolve
from mirage.models.voice.sola import SolaStream

with warnings.catch_warnings():  # pyworld imports the deprecated pkg_resources
    warnings.simplefilter("ignore")
    import pyworld

__all__ = ["DspConverter", "presets", "unavailable_reason"]

RATE = 16000
FRAME_MS = 5.0  # WORLD analysis hop
_HOP = int(RATE * FRAME_MS / 1000)
_CONTEXT_MS = 40.0  # history before the synthesised span, for DIO and CheapTrick
_LOOKAHEAD_MS = 5.0  # newest audio not yet synthesised (its analysis lacks future)
_CROSSFADE_MS = 10.0
_SEARCH_MS = 10.0
_F0_FLOOR, _F0_CEIL = 60.0, 800.0
_AP_STRIDE = 4  # D4C every 4th frame (20 ms), interpolated: aperiodicity moves slowly
_SILENCE = 1e-4  # peak below which a span is digital silence (-80 dBFS)
BLOCK_MS_RANGE = (80.0, 200.0)


def unavailable_reason(models_dir: str | None = None) -> str | None:
    """The dsp voice needs no weights; only pyworld, imported above."""
    return None


def _samples(ms: float) -> int:
    return round(RATE * ms / 1000)


def warp_envelope(envelope: np.ndarray, ratio: float) -> np.ndarray:
    """Scale an envelope's frequency axis by ``ratio``: ``out(f) = envelope(f / ratio)``.

    Bins past the top of the source repeat its last bin.
    """
    if ratio == 1.0:
        return envelope
    bins = envelope.shape[-1]
    src = np.minimum(np.arange(bins) / ratio, bins - 1.0)
    low = np.floor(src).astype(np.int64)
    high = np.minimum(low + 1, bins - 1)
    frac = src - low
    return envelope[..., low] * (1.0 - frac) + envelope[..., high] * frac


def _sparse_d4c(x: np.ndarray, f0: np.ndarray, times: np.ndarray) -> np.ndarray:
    """D4C aperiodicity on every ``_AP_STRIDE``-th frame, linearly interpolated between.

    D4C is WORLD's costliest step (about half the time per block); at 16 kHz it
    codes a single band, so a 20 ms grid loses nothing audible.
    """
    n = len(f0)
    picks = np.unique(np.append(np.arange(0, n, _AP_STRIDE), n - 1))
    coarse = pyworld.d4c(
        x, np.ascontiguousarray(f0[picks]), np.ascontiguousarray(times[picks]), RATE
    )
    position = np.interp(np.arange(n), picks, np.arange(len(picks)))
    low = np.minimum(np.floor(position).astype(np.int64), len(picks) - 1)
    high = np.minimum(low + 1, len(picks) - 1)
    frac = (position - low)[:, None]
    return np.ascontiguousarray(coarse[low] * (1.0 - frac) + coarse[high] * frac)


class DspConverter:
    """Pitch and formant shift of 16 kHz speech, block by block, on one CPU core.

    Made by ``create_converter("dsp", preset=..., semitones=..., formant=...)``;
    ``update()`` changes the voice live without resetting the stream.
    """

    sample_rate = RATE

    def __init__(
        self,
        preset: str | None = None,
        semitones: float | None = None,
        formant: float | None = None,
        flat_hz: float | None = None,
        whisper: bool | None = None,
        block_ms: float = 160.0,
        models_dir: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:  # options arrive from the API: a typo is the caller's error, not a crash
            raise BadInput(
                f"unknown dsp option(s) {', '.join(sorted(unknown))}; known: preset, semitones, "
                "formant, flat_hz, whisper, block_ms"
            )
        low, high = BLOCK_MS_RANGE
        if isinstance(block_ms, bool) or not isinstance(block_ms, (int, float)):
            raise BadInput(f"block_ms must be a number, got {block_ms!r}")
        if not low <= float(block_ms) <= high:
            raise BadInput(f"block_ms must be between {low:g} and {high:g}, got {block_ms!r}")
        self.params = resolve(
            VoiceParams(),
            preset,
            semitones=semitones,
            formant=formant,
            flat_hz=flat_hz,
            whisper=whisper,
        )
        self.block_size = _samples(float(block_ms))
        self._lookahead = _samples(_LOOKAHEAD_MS)
        self._sola = SolaStream(self.block_size, _samples(_CROSSFADE_MS), _samples(_SEARCH_MS))
        self.latency_s = (self._lookahead + self._sola.latency_samples) / RATE
        span = self._sola.chunk_size  # what one push needs
        # The synthesised span starts on a frame: context rounded up to whole hops.
        self._context = -(-_samples(_CONTEXT_MS) // _HOP) * _HOP
        self._history = np.zeros(self._context + span + self._lookahead, np.float64)
        self._lock = threading.Lock()  # reset() may come from another thread

    def update(self, preset: str | None = None, **values: Any) -> VoiceParams:
        """Change the voice live (preset, semitones, formant, flat_hz, whisper).

        The stream keeps its history and seam state, so the change is heard at
        the next block without a gap. Returns the parameters now in force. It
        does not wait for a block in progress (that block keeps the old voice):
        swapping one frozen object is atomic, so an event loop never blocks here.
        """
        params = resolve(self.params, preset, **values)
        self.params = params
        return params

    def reset(self) -> None:
        """Forget the stream: history and seam state (a new speaker or session)."""
        with self._lock:
            self._history[:] = 0.0
            self._sola.reset()

    def convert(self, block: np.ndarray) -> np.ndarray:
        """Take ``block_size`` float32 samples in [-1, 1]; return as many converted ones."""
        samples = np.asarray(block)
        if samples.ndim == 2 and 1 in samples.shape:
            samples = samples.reshape(-1)
        if samples.shape != (self.block_size,):
            raise BadInput(
                f"dsp converter wants {self.block_size} mono samples per block, "
                f"got shape {samples.shape}"
            )
        if not np.issubdtype(samples.dtype, np.floating):
            raise BadInput(f"audio blocks are float samples in [-1, 1], got {samples.dtype}")
        if not np.all(np.isfinite(samples)):
            raise BadInput("audio block holds non-finite samples")
        with self._lock:
            params = self.params
            history = self._history
            history[: -self.block_size] = history[self.block_size :]
            history[-self.block_size :] = samples
            chunk = self._resynthesise(history, params)
            return self._sola.push(chunk)

    def _resynthesise(self, history: np.ndarray, params: VoiceParams) -> np.ndarray:
        """The span ``[context, context + chunk)`` of ``history``, converted."""
        start, size = self._context, self._sola.chunk_size
        span = history[start : start + size]
        if float(np.max(np.abs(span))) < _SILENCE:
            return np.zeros(size, np.float32)
        if params.is_identity:  # the voice itself beats its resynthesis, and costs nothing
            return np.clip(span, -1.0, 1.0).astype(np.float32)
        f0, times = pyworld.dio(
            history, RATE, f0_floor=_F0_FLOOR, f0_ceil=_F0_CEIL, frame_period=FRAME_MS
        )
        f0 = pyworld.stonemask(history, f0, times, RATE)
        # Frames from one hop before the span to one hop after it.
        first = start // _HOP - 1
        last = min(len(f0) - 1, -(-(start + size) // _HOP) + 1)
        f0, times = f0[first : last + 1], np.ascontiguousarray(times[first : last + 1])
        f0 = np.ascontiguousarray(f0)
        envelope = pyworld.cheaptrick(history, f0, times, RATE, f0_floor=_F0_FLOOR)
        if params.whisper:
            aperiodicity = np.ones_like(envelope)
            target = np.zeros_like(f0)
        else:
            aperiodicity = _sparse_d4c(history, f0, times)
            target = self._target_f0(f0, params)
        if params.formant != 1.0:
            envelope = warp_envelope(envelope, params.formant)
            aperiodicity = warp_envelope(aperiodicity, params.formant)
        voice = pyworld.synthesize(
            np.ascontiguousarray(target),
            np.ascontiguousarray(envelope),
            np.ascontiguousarray(aperiodicity),
            RATE,
            FRAME_MS,
        )
        offset = start - first * _HOP
        out = voice[offset : offset + size]
        if len(out) < size:  # the synthesiser's last frame ends a little short
            out = np.pad(out, (0, size - len(out)))
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    @staticmethod
    def _target_f0(f0: np.ndarray, params: VoiceParams) -> np.ndarray:
        voiced = f0 > 0
        if params.flat_hz is not None:
            return np.where(voiced, params.flat_hz, 0.0)
        return f0 * (2.0 ** (params.semitones / 12.0))
