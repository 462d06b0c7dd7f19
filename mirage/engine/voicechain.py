"""The voice chain: noise suppression → voice gate → low shelf → the session's converter.

``CleanVoice`` has the ``VoiceConverter`` interface (same rate and block size as
the converter it wraps; ``latency_s`` includes its own delay, which the A/V sync
reads), so the pipeline, the guard and the offline renderer take it like any
backend. It is built in ``voice_chain`` for every path: server sessions (page,
WHIP, ``mirage client``), the relay API and ``mirage render``.

The option ``denoise`` (see ``parse_denoise``) is the chain's own: it never
reaches the converter, and ``update(denoise=...)`` changes it live. "off" keeps
the same delay (the stream passes a delay line), so a live switch never moves
audio against video.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from mirage.engine.denoise import (
    FRAME,
    NS_DELAY,
    RATE,
    FrameSuppressor,
    LowShelf,
    parse_denoise,
)
from mirage.engine.gate import VoiceGate
from mirage.engine.guard import close_model
from mirage.engine.resample import FirResampler
from mirage.models import registry
from mirage.models.base import BadInput, VoiceConverter

#: Voices that resynthesise what they hear get the chain unless asked not to; the
#: others (passthrough, the test backends) only when the session sets ``denoise``.
CLEANED_BY_DEFAULT = frozenset({"dsp", "rvc"})


def split_options(voice: str, options: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """(the converter's own options, the suppressor level or None for no chain).

    A bad ``denoise`` is ``BadInput`` here, before any model is made."""
    rest = dict(options)
    if "denoise" in rest:
        return rest, parse_denoise(rest.pop("denoise"))
    return rest, (parse_denoise("on") if voice in CLEANED_BY_DEFAULT else None)


def validate_voice(
    voice: str, options: Any, *, testing: bool = False, live: bool = False
) -> dict[str, Any]:
    """``registry.validate`` for a voice request plus the chain's own ``denoise``
    (any voice may set it; it never reaches the converter's schema)."""
    rest = dict(options) if isinstance(options, dict) else options
    has_denoise = isinstance(rest, dict) and "denoise" in rest
    denoise = rest.pop("denoise") if has_denoise else None
    checked = registry.validate("voice", voice, rest, testing=testing, live=live)
    if has_denoise:
        try:
            parse_denoise(denoise)
        except BadInput as exc:
            raise BadInput(f"bad voice option: {exc}") from None
        checked["denoise"] = denoise
    return checked


def voice_chain(converter: VoiceConverter, level: int | None) -> VoiceConverter:
    """``converter`` behind the suppressor and gate (None: the converter alone)."""
    if level is None:
        return converter
    try:
        return CleanVoice(converter, level)
    except BaseException:
        close_model(converter)  # it may hold weights
        raise


class Cleaner:
    """Any block size at ``rate`` in, as many samples out, ``delay_samples`` late."""

    def __init__(self, rate: int, block_size: int, level: int) -> None:
        if rate % RATE and RATE % rate:
            raise BadInput(f"denoise works with 16, 32 or 48 kHz voices, not {rate} Hz")
        if rate < RATE:
            raise BadInput(f"denoise needs at least 16 kHz audio, not {rate} Hz")
        self.rate = rate
        self._factor = rate // RATE
        resampled = self._factor > 1
        self._down = FirResampler(rate, RATE) if resampled else None
        self._up = FirResampler(RATE, rate) if resampled else None
        self.suppressor = FrameSuppressor(level)
        self.gate = VoiceGate(RATE, FRAME)
        self.shelf = LowShelf()  # the suppressor's low cut given back, after the gate
        self._pending = np.zeros(0, np.float32)  # 16 kHz samples short of a frame
        fill = self._framing_fill(block_size)
        self._out = np.zeros(fill, np.float32)  # at `rate`, primed so a block is ready
        # Each FIR holds back half its length (16 taps per phase) at the high rate.
        fir = 2 * 16 * self._factor if resampled else 0
        self.delay_samples = fill + fir + NS_DELAY * self._factor
        # "off": the input itself, as late as the cleaned path (whole band, no resampling).
        self._plain = np.zeros(self.delay_samples, np.float32)
        self.stage_seconds: dict[str, float] = {}

    def _framing_fill(self, block: int) -> int:
        """Samples (at ``rate``) the output must start ahead by, so that every block
        finds enough: the most the 10 ms framing (and decimation) ever holds back,
        found by replaying one period of block lengths."""
        f = self._factor
        period = math.lcm(block, FRAME * f) // block
        phase, pending, short, made, taken = 0, 0, 0, 0, 0
        for _ in range(period + 1):
            n16 = len(range(phase, block, f)) if f > 1 else block
            phase = (phase - block) % f if f > 1 else 0
            pending += n16
            made += (pending // FRAME) * FRAME * f
            pending %= FRAME
            taken += block
            short = max(short, taken - made)
        return short

    def __call__(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, np.float32)
        x16 = self._down(x) if self._down is not None else x
        t0 = time.perf_counter()
        joined = np.concatenate([self._pending, x16]) if len(self._pending) else x16
        whole = len(joined) // FRAME * FRAME
        self._pending = joined[whole:]
        frames = []
        gate = self.suppressor.level > 0
        for start in range(0, whole, FRAME):
            done = self.suppressor(joined[start : start + FRAME])
            if not gate:
                frames.append(done.audio)
                continue
            gated = self.gate(done.audio, done.speech)
            # The shelf gives back what the suppressor took: as much as it was used.
            shelved = self.shelf(gated)
            frames.append(gated + done.strength * (shelved - gated))
        t1 = time.perf_counter()
        if frames:
            y16 = np.concatenate(frames)
            y = self._up(y16) if self._up is not None else y16
            self._out = np.concatenate([self._out, y])
        out, self._out = self._out[: len(x)], self._out[len(x) :]
        self.stage_seconds = {"denoise": t1 - t0}
        plain = np.concatenate([self._plain, x])
        self._plain = plain[len(x) :]
        return out if gate else plain[: len(x)]


class CleanVoice(VoiceConverter):
    """A ``VoiceConverter``: ``inner`` fed suppressed, gated audio."""

    def __init__(self, inner: VoiceConverter, level: int) -> None:
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self.block_size = inner.block_size
        self.cleaner = Cleaner(inner.sample_rate, inner.block_size, level)
        self.delay_s = self.cleaner.delay_samples / inner.sample_rate
        self.latency_s = inner.latency_s + self.delay_s

    @property
    def level(self) -> int:
        return self.cleaner.suppressor.level

    @property
    def gate_open_share(self) -> float | None:
        """Share of the last 10 s the gate let through (None: off or no audio yet)."""
        return self.cleaner.gate.open_share if self.level else None

    @property
    def suppressor_strength(self) -> float | None:
        """How hard the suppressor works now: 1 in full, 0 bypassed (a clean input).
        None when it is off."""
        return self.cleaner.suppressor.strength.value if self.level else None

    @property
    def stage_seconds(self) -> dict[str, float]:
        return self.cleaner.stage_seconds

    def convert(self, block: np.ndarray) -> np.ndarray:
        samples = np.asarray(block)
        if samples.shape != (self.block_size,):
            raise BadInput(
                f"the voice chain wants {self.block_size} mono samples per block, "
                f"got shape {samples.shape}"
            )
        return self.inner.convert(self.cleaner(samples))

    @property
    def live_settings(self) -> bool:
        return True  # ``denoise`` is, whatever the converter

    def update(self, denoise: Any = None, **options: Any) -> None:
        """Live settings: ``denoise`` is the chain's, the rest go to the converter.
        Everything is checked before anything changes."""
        level = None if denoise is None else parse_denoise(denoise)
        if options:
            if not self.inner.live_settings:
                raise BadInput("this voice backend has no live settings")
            self.inner.update(**options)
        if level is not None:
            self.cleaner.suppressor.set_level(level)  # picked up at the next frame

    def reset(self) -> None:
        self.inner.reset()

    def close(self) -> None:
        self.inner.close()

    def wait_closed(self, timeout: float) -> bool:
        return self.inner.wait_closed(timeout)
