"""The embedded default voice: pitch and formant shift with WORLD, streamed at a 10 ms hop.

Why WORLD (pyworld) and not PSOLA/LPC: WORLD splits speech into F0, a smooth
spectral envelope and aperiodicity, so pitch (scale F0) and formants (warp the
envelope's frequency axis) are changed independently and cleanly over the whole
-12..+12 semitone range, and the robot (flat F0) and whisper (no voicing)
voices fall out for free. TD-PSOLA is cheaper but needs reliable streaming
pitch marks and turns rough beyond about +-7 semitones; LPC envelopes are
peakier and shift less gracefully.

Why a streaming synthesiser of our own (:class:`PulseSynth`) and not
``pyworld.synthesize`` per block: WORLD's synthesis restarts its pulse phase at
every call, so blocks had to be joined by SOLA, which costs crossfade + search
(20 ms) of delay and, at a 10 ms hop, would cross-fade 100 times a second. Our
synthesiser is WORLD's pulse/noise overlap-add (minimum-phase responses, the
same spectral formula) with its phase, noise and overlap-add tail carried
across blocks, so consecutive blocks are one continuous signal: no seams, no
SOLA. Minimum-phase responses are causal, so a sample is final as soon as the
pulses up to it are placed; the only delay is the analysis look-ahead.

Why our own pitch tracker (:func:`track_f0`) and not DIO: DIO needs the whole
voiced run around a frame; given a window that ends 19 ms after the frame it
called the first 50-70 ms of every voiced stretch unvoiced (measured: 2-10 % of
onset frames voiced, against 64-80 % with the tracker), and below 150 ms of
window it finds no voice at all. The tracker compares the frame's neighbourhood
with the signal's own past (normalised cross-correlation), so it needs only the
look-ahead; StoneMask then refines F0 as before (shifts land within 0.01
semitone on espeak speech). A voiced frame's successor keeps its period on a
weaker correlation than a fresh start needs (hysteresis, carried across blocks):
on recorded speech (LibriSpeech) the tracker had called a quarter of Harvest's
voiced frames unvoiced, and its resynthesis scored 0.2-0.3 DNSMOS OVRL under
WORLD's own with Harvest's F0; the hysteresis won back +0.16. The period is read
from the band 80-400 Hz (voicing still from the full band): on the full band
a man's rough or creaky vowels correlated best one ring of the first formant
later, and a fifth of his voiced frames came out at 2-6 times his pitch.

Streaming: each block of ``block_ms`` (a whole number of 5 ms frames) is
appended to a window of 60 ms history + block + ``_LOOKAHEAD_MS``. Only the
frames of the span being synthesised are analysed (the first one is kept from
the previous block): F0, CheapTrick's envelope, D4C's aperiodicity (on a 10 ms
grid). The span ends ``_LOOKAHEAD_MS`` (19 ms) before the newest sample, so
every frame's analysis sees 19 ms of future (a CheapTrick window is 3 pitch
periods: whole down to 80 Hz). The stream lags its input by ``latency_s`` =
look-ahead + the responses' energy centroid = 20 ms, on top of the caller's
block buffering: 10 + 20 = 30 ms with the defaults (was 160 + 25 ms). Measured
with ``bench/voice.py``: about 0.08-0.10 of one core at 10 ms blocks, against
0.04 for the old 160 ms blocks (docs/benchmarks.md). Long blocks (80-200 ms)
see more future for their early frames, so their voice starts up to 3 ms
earlier than ``latency_s`` says; the default is exact to 2 ms.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np
from scipy.signal import butter, sosfilt

from mirage.models.base import BadInput, VoiceConverter
from mirage.models.voice.presets import VoiceParams, presets, resolve

with warnings.catch_warnings():  # pyworld imports the deprecated pkg_resources
    warnings.simplefilter("ignore")
    import pyworld

__all__ = ["BLOCK_MS_DEFAULT", "BLOCK_MS_RANGE", "DspConverter", "presets", "unavailable_reason"]

# -- the options (mirrored by the API's option schema) ------------------------------------
#: Default block: 10 ms (two WORLD frames). The old 160 ms block stays an option.
BLOCK_MS_DEFAULT = 10.0
#: Allowed ``block_ms``: a whole number of 5 ms WORLD frames in this range.
BLOCK_MS_RANGE = (5.0, 200.0)

RATE = 16000
FRAME_MS = 5.0  # WORLD analysis hop; block_ms must be a multiple of it
_HOP = int(RATE * FRAME_MS / 1000)
_CONTEXT_MS = 60.0  # history before the synthesised span: the tracker's longest lag + margin
_NCCF_VOICED = 0.6  # a frame is voiced when its best self-correlation reaches this
_NCCF_NEAR = 0.85  # the shortest lag this close to the best is the period
#: A voiced frame's successor stays voiced, near the same period (within ``_KEEP_SPAN``),
#: while its full band's best self-correlation reaches this: onsets, ends and glides
#: correlate worse over the tracker's 38 ms window than a steady vowel. Without it, on
#: recorded speech the tracker called a quarter of Harvest's voiced frames unvoiced and
#: the synthesis made them noise (issue 21, docs/benchmarks.md).
_NCCF_KEEP = 0.4
_KEEP_SPAN = 0.2
#: The period is read in this band (4th-order Butterworth band-pass), voicing on the full
#: band. In a low voice the first formant rings several times a period, and the full
#: band correlates better one ring later than one period later wherever the period
#: wanders: on recorded men's speech (LibriSpeech) the tracker put a fifth of the voiced
#: frames at 2-6 times the F0 that Harvest and DIO agree on (a squeak in the converted
#: voice). Below 400 Hz the formants' rings are gone and a voice's fundamental, up to a
#: child's, is still its strongest correlate; above 80 Hz mains hum and rumble are (with
#: a low-pass alone, the recordings' own hum held a woman's voice at 60-70 Hz on 40 % of
#: her frames when no suppressor ran). A 70 Hz voice keeps its harmonics in the band.
#: Issue 21, docs/benchmarks.md.
_PERIOD_BAND_HZ = (80.0, 400.0)
_PERIOD_BAND = butter(4, _PERIOD_BAND_HZ, btype="bandpass", fs=RATE, output="sos")
_LOOKAHEAD_MS = 19.0625  # newest audio not yet synthesised: the future its analysis sees
#: A resynthesised voice's energy lags its frames' times by the minimum-phase responses'
#: energy centroid: 0.94 ms (15 samples) on average, measured (tests/test_dsp.py, the
#: spectrogram cross-correlation) over five presets and two voices. It is counted in
#: ``latency_s`` and the unchanged voice is delayed as much: every setting lags 20 ms.
_RESPONSE_DELAY_MS = 0.9375
_F0_FLOOR, _F0_CEIL = 60.0, 800.0
_FFT = pyworld.get_cheaptrick_fft_size(RATE, _F0_FLOOR)  # 1024 at 16 kHz
_UNVOICED_F0 = 200.0  # noise bursts per second in unvoiced stretches (WORLD: 500)
_AP_STRIDE = 2  # D4C on every 2nd frame (10 ms), interpolated between
#: Voiced frames' aperiodic share below ``_VOICED_NOISE_HZ`` is scaled by this. D4C reads
#: whatever a suppressor left between the harmonics as aperiodicity, and the synthesis
#: turns it into a hiss over the voice. Behind the suppressor at 10 dB SNR this lifts
#: DNSMOS OVRL by +0.08 on average (babble +0.04, music +0.12, fan +0.08; three noise
#: draws each), clean espeak speech +0.02 (P.808 -0.04): bench/voice_variants.py,
#: docs/benchmarks.md, issue 21. Breath and fricatives live in unvoiced frames and above 4 kHz: kept.
_VOICED_NOISE_SCALE = 0.1
_VOICED_NOISE_HZ = 4000.0
_SILENCE = 1e-4  # peak below which a frame is digital silence (-80 dBFS)
_FLOOR = 1e-16  # spectral floor before the log (WORLD's kMySafeGuardMinimum)


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


def quieter_voiced_noise(ratio: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """``ratio`` (frames x bins, aperiodic energy share) with voiced frames' share below
    ``_VOICED_NOISE_HZ`` scaled by ``_VOICED_NOISE_SCALE``. Voiced is the tracker's
    word (an F0), also where D4C called the frame all noise: in noise D4C gives up on
    voiced frames the tracker still follows, and those turned into bursts of hiss
    (keeping D4C's verdict there lost most of the gain: +0.02 OVRL instead of +0.08)."""
    voiced = f0 > 0
    if not np.any(voiced):
        return ratio
    low = np.arange(ratio.shape[1]) * RATE / _FFT < _VOICED_NOISE_HZ
    out = ratio.copy()
    out[np.ix_(voiced, low)] *= _VOICED_NOISE_SCALE
    return out


def track_f0(x: np.ndarray, centres: np.ndarray, future: int, previous: float = 0.0) -> np.ndarray:
    """F0 (Hz, 0 = unvoiced) at each sample index in ``centres`` from at most ``future``
    samples after it: normalised cross-correlation with the signal's own past.

    DIO needs the whole voiced run around a frame (it calls the first 50-70 ms of
    every voiced stretch unvoiced when the window ends 20 ms after the frame), so
    streaming needs a tracker that looks back: the window ``[c - future, c + future)``
    is compared with itself ``lag`` samples earlier, for every lag of 60-800 Hz.
    Whether a frame is voiced is read from the full band; which lag is its period,
    from the band ``_PERIOD_BAND_HZ`` (80-400 Hz, see there). A frame after a voiced one
    (``previous`` is the F0 of the frame before ``centres[0]``) keeps the best lag
    within ``_KEEP_SPAN`` of its period while the full band still correlates at
    ``_NCCF_KEEP``, unless another lag is clearly better (under ``_NCCF_NEAR`` of
    the best); the lag at half of it takes over if it correlates as well (the voice rose
    an octave). Otherwise, if the full band reaches ``_NCCF_VOICED``, the smallest
    lag within ``_NCCF_NEAR`` of the best wins (the period, not a multiple of it).
    StoneMask refines the estimate afterwards.
    """
    low, high = int(RATE / _F0_CEIL), int(np.ceil(RATE / _F0_FLOOR))
    band = sosfilt(_PERIOD_BAND, x)
    out = np.zeros(len(centres))
    for row, centre in enumerate(centres):
        voicing = _nccf(x, centre, future, low, high)
        period = _nccf(band, centre, future, low, high)
        if voicing is None or period is None:
            previous = 0.0
            continue
        strongest, best = float(voicing.max()), float(period.max())
        i = _continued(period, previous, low) if strongest >= _NCCF_KEEP else None
        if i is not None and strongest >= _NCCF_VOICED and period[i] < _NCCF_NEAR * best:
            i = None  # a clearly better period than the one carried: start afresh
        if i is not None:
            i = _halved(period, i, low)
        if i is None:
            if strongest < _NCCF_VOICED:
                previous = 0.0
                continue
            peaks = np.flatnonzero(
                (period[1:-1] >= period[:-2])
                & (period[1:-1] >= period[2:])
                & (period[1:-1] >= _NCCF_NEAR * best)
            )
            i = int(peaks[0]) + 1 if len(peaks) else int(np.argmax(period))
        step = 0.0
        if 0 < i < len(period) - 1:  # parabolic interpolation of the peak
            a, b, c = period[i - 1], period[i], period[i + 1]
            step = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c < 0 else 0.0
        out[row] = previous = RATE / (low + i + step)
    return out


def _halved(period: np.ndarray, i: int, low: int) -> int:
    """``i``, or the lag near half of it (within 3 %) if that correlates at least as well.

    In the period band a voice is nearly a sine, and a sine correlates as well two
    periods later as one: a carried period that has become two of the voice's (it rose
    an octave) is otherwise never clearly worse than the voice's own."""
    half = (low + i) / 2.0
    a = max(0, int(half * 0.97) - low)
    b = min(len(period), int(np.ceil(half * 1.03)) - low + 1)
    if a >= b:
        return i
    k = a + int(np.argmax(period[a:b]))
    return k if period[k] >= period[i] else i


def _nccf(x: np.ndarray, centre: int, future: int, low: int, high: int) -> np.ndarray | None:
    """Normalised cross-correlation of ``x[centre - future : centre + future]`` with
    itself ``low + i`` samples earlier, at index ``i`` (None: silent or too early)."""
    window = x[centre - future : centre + future]
    past = x[centre - future - high : centre + future - low]
    if len(past) < len(window) + high - low or not np.any(window):
        return None
    corr = np.correlate(past, window, mode="valid")[::-1]  # index i: lag low + i
    energy = np.concatenate(([0.0], np.cumsum(past * past)))
    n = len(window)
    shifted = (energy[n:] - energy[:-n])[::-1]
    return corr / (np.sqrt(shifted * float(np.dot(window, window))) + 1e-12)


def _continued(period: np.ndarray, previous: float, low: int) -> int | None:
    """Index of the best correlation within ``_KEEP_SPAN`` of ``previous``'s period
    (None after an unvoiced frame)."""
    if previous <= 0.0:
        return None
    lag = RATE / previous
    a = max(0, int(np.floor(lag * (1.0 - _KEEP_SPAN))) - low)
    b = min(len(period), int(np.ceil(lag * (1.0 + _KEEP_SPAN))) - low + 1)
    if a >= b:
        return None
    return a + int(np.argmax(period[a:b]))


def _minimum_phase(log_amplitude: np.ndarray) -> np.ndarray:
    """Minimum-phase spectra (rows) whose log magnitude is ``log_amplitude`` (cepstral fold)."""
    cepstrum = np.fft.irfft(log_amplitude, _FFT, axis=-1)
    half = _FFT // 2
    cepstrum[:, 1:half] *= 2.0
    cepstrum[:, half + 1 :] = 0.0
    return np.asarray(np.exp(np.fft.rfft(cepstrum, axis=-1)))


class PulseSynth:
    """WORLD's excitation + overlap-add synthesis, continuous across calls.

    Each call synthesises the next ``n`` samples from ``n / hop + 1`` frames (the
    first at the call's first sample, the last one hop past its end). A pulse is
    placed wherever the running phase of the interpolated F0 crosses a whole
    cycle; it contributes a minimum-phase periodic response (voiced part) and a
    burst of noise shaped by a minimum-phase filter (aperiodic part), with
    WORLD's weights: ``sqrt(pulse interval)`` for the periodic one. The phase,
    the noise generator and the not-yet-due tail of the overlap-add are state,
    so the stream has no seams.
    """

    def __init__(self, hop: int, seed: int = 0) -> None:
        self.hop = hop
        self._rng = np.random.default_rng(seed)
        self._phase = 0.0  # cycles of the excitation at the next sample
        self._tail = np.zeros(_FFT, np.float64)  # overlap-add beyond the last output
        bins = np.arange(_FFT // 2 + 1)
        self._advance = 2j * np.pi * bins / _FFT  # x frac samples: a linear-phase advance
        # The periodic response's DC is taken out with a smooth causal window (as WORLD's
        # dc remover does, there centred), so pulses do not build up a low-frequency drift.
        window = 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(_FFT // 2) + 1) / (_FFT // 2 + 1))
        self._dc_window = window / window.sum()

    def reset(self) -> None:
        self._phase = 0.0
        self._tail[:] = 0.0

    def flush(self, n: int) -> np.ndarray:
        """The next ``n`` samples of the tail alone (no new pulses), zeros past its end."""
        out = np.zeros(n)
        kept = min(n, len(self._tail))
        out[:kept] = self._tail[:kept]
        self._tail = np.concatenate([self._tail[kept:], np.zeros(kept)])
        return out

    def __call__(
        self,
        f0: np.ndarray,
        envelope: np.ndarray,
        aperiodic_ratio: np.ndarray,
        gain: np.ndarray,
    ) -> np.ndarray:
        """``len(f0) - 1`` hops of output from per-frame F0 (0 = unvoiced), envelope,
        aperiodic energy ratio (aperiodicity squared) and gain (0 = silent frame)."""
        hop = self.hop
        n = (len(f0) - 1) * hop
        position = np.arange(n) / hop  # in frames
        voiced = (f0 > 0).astype(np.float64)
        pulse_f0 = np.where(f0 > 0, f0, _UNVOICED_F0)
        frames = np.arange(len(f0))
        rate = np.interp(position, frames, pulse_f0)
        vuv = np.interp(position, frames, voiced)
        phase = self._phase + np.cumsum(rate) / RATE
        before = np.concatenate([[self._phase], phase[:-1]])
        pulses = np.flatnonzero(np.floor(phase) > np.floor(before))
        # The cycle was crossed this many samples before the sample it was found on.
        early = (phase[pulses] - np.floor(phase[pulses])) * RATE / rate[pulses]
        self._phase = float(phase[-1] - np.floor(phase[-1]))
        buffer = np.concatenate([self._tail, np.zeros(n)])
        keep = np.interp(pulses / hop, frames, gain) > 0
        pulses, early = pulses[keep], np.minimum(early[keep], 1.0)
        if len(pulses):
            self._add_pulses(
                buffer, pulses, early, rate, vuv, position, envelope, aperiodic_ratio, gain
            )
        out = buffer[:n]
        self._tail = buffer[n:]
        return out

    def _add_pulses(
        self,
        buffer: np.ndarray,
        pulses: np.ndarray,
        early: np.ndarray,
        rate: np.ndarray,
        vuv: np.ndarray,
        position: np.ndarray,
        envelope: np.ndarray,
        aperiodic_ratio: np.ndarray,
        gain: np.ndarray,
    ) -> None:
        interval = np.maximum(1, np.round(RATE / rate[pulses])).astype(np.int64)

        def at(frames: np.ndarray, where: np.ndarray) -> np.ndarray:
            low = np.minimum(np.floor(where).astype(np.int64), len(frames) - 2)
            frac = where - low
            if frames.ndim == 2:
                frac = frac[:, None]
            return np.asarray(frames[low] * (1.0 - frac) + frames[low + 1] * frac)

        here = position[pulses]
        env, ratio = at(envelope, here), at(aperiodic_ratio, here)
        level = at(gain, here)
        # A noise burst fills the interval after its pulse: it takes the spectrum of the
        # interval's middle, or its energy would lag the voice by half an interval.
        middle = np.minimum(here + interval / 2 / self.hop, len(envelope) - 1.0)
        responses = self._aperiodic(at(envelope, middle), at(aperiodic_ratio, middle), interval)
        periodic = (vuv[pulses] > 0.5) & (ratio[:, 0] < 0.999)
        if np.any(periodic):
            rows = np.flatnonzero(periodic)
            log_amp = 0.5 * np.log(env[rows] * (1.0 - ratio[rows]) + _FLOOR)
            spectrum = _minimum_phase(log_amp) * np.exp(self._advance * early[rows, None])
            wave = np.fft.irfft(spectrum, _FFT, axis=-1)
            half = _FFT // 2
            dc = wave[:, :half].sum(axis=1, keepdims=True)
            wave[:, :half] -= dc * self._dc_window
            wave[:, half:] = 0.0  # the wrapped (non-causal) part
            responses[rows] += wave * np.sqrt(interval[rows])[:, None]
        responses *= level[:, None]
        for p, response in zip(pulses, responses, strict=True):
            buffer[p : p + _FFT] += response

    def _aperiodic(self, env: np.ndarray, ratio: np.ndarray, interval: np.ndarray) -> np.ndarray:
        """Noise bursts of one pulse interval each, shaped by ``sqrt(env * ratio)``."""
        noise = np.zeros((len(env), _FFT))
        for row, size in enumerate(interval):
            size = min(int(size), _FFT)
            burst = self._rng.standard_normal(size)
            noise[row, :size] = burst - burst.mean()
        shaped = np.fft.rfft(noise, axis=-1) * _minimum_phase(0.5 * np.log(env * ratio + _FLOOR))
        return np.asarray(np.fft.irfft(shaped, _FFT, axis=-1))


class DspConverter(VoiceConverter):
    """Pitch and formant shift of 16 kHz speech, block by block, on one CPU core.

    Made by ``create_converter("dsp", preset=..., semitones=..., formant=...,
    block_ms=...)``; ``update()`` changes the voice live without resetting the stream.
    """

    sample_rate = RATE

    def __init__(
        self,
        preset: str | None = None,
        semitones: float | None = None,
        formant: float | None = None,
        flat_hz: float | None = None,
        whisper: bool | None = None,
        block_ms: float = BLOCK_MS_DEFAULT,
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
        if float(block_ms) % FRAME_MS:
            raise BadInput(f"block_ms must be a multiple of {FRAME_MS:g} ms, got {block_ms!r}")
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
        self._response_delay = _samples(_RESPONSE_DELAY_MS)
        self.latency_s = (self._lookahead + self._response_delay) / RATE  # 20 ms
        self._context = _samples(_CONTEXT_MS)  # a whole number of hops
        self._history = np.zeros(self._context + self.block_size + self._lookahead, np.float64)
        self._synth = PulseSynth(_HOP)
        # The last analysed frame (F0, envelope, aperiodicity): the next block's first.
        self._boundary: tuple[float, np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()  # reset() may come from another thread

    def update(self, preset: str | None = None, **values: Any) -> VoiceParams:
        """Change the voice live (preset, semitones, formant, flat_hz, whisper).

        The stream keeps its history and synthesis state, so the change is heard
        at the next block without a gap. Returns the parameters now in force. It
        does not wait for a block in progress (that block keeps the old voice):
        swapping one frozen object is atomic, so an event loop never blocks here.
        """
        params = resolve(self.params, preset, **values)
        self.params = params
        return params

    def reset(self) -> None:
        """Forget the stream: history and synthesis state (a new speaker or session)."""
        with self._lock:
            self._history[:] = 0.0
            self._synth.reset()
            self._boundary = None

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
            out = self._resynthesise(history, params)
            return np.clip(out, -1.0, 1.0).astype(np.float32)

    def _resynthesise(self, history: np.ndarray, params: VoiceParams) -> np.ndarray:
        """The span ``[context, context + block)`` of ``history``, converted."""
        start, size = self._context, self.block_size
        if params.is_identity:  # the voice itself beats its resynthesis, and costs nothing
            self._boundary = None
            early = start - self._response_delay  # delayed as much as a resynthesis is
            return history[early : early + size] + self._synth.flush(size)
        # Frames on the span's first sample .. one hop past its last: the synthesis
        # interpolates between them. A frame within a hop of sound is loud.
        first, last = start // _HOP, (start + size) // _HOP
        around = np.abs(history[: len(history) // _HOP * _HOP]).reshape(-1, _HOP).max(axis=1)
        loud = np.maximum(around[first - 1 : last], around[first : last + 1]) >= _SILENCE
        if not np.any(loud):
            self._boundary = None
            return self._synth.flush(size)
        f0, envelope, aperiodicity = self._analyse(history, first, last)
        if params.whisper:
            aperiodicity = np.ones_like(envelope)
            target = np.zeros_like(f0)
        else:
            target = self._target_f0(f0, params)
        if params.formant != 1.0:
            envelope = warp_envelope(envelope, params.formant)
            aperiodicity = warp_envelope(aperiodicity, params.formant)
        ratio = quieter_voiced_noise(np.clip(aperiodicity, 0.001, 0.999999) ** 2, target)
        return self._synth(target, envelope, ratio, loud.astype(np.float64))

    def _analyse(
        self, history: np.ndarray, first: int, last: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """F0, envelope and aperiodicity of frames ``first..last`` of the window.

        Frame ``first`` is the previous block's frame ``last``: it is reused, not
        analysed again, when that block was analysed.
        """
        known = self._boundary
        new = first + (0 if known is None else 1)
        centres = np.arange(new, last + 1) * _HOP
        times = centres / RATE
        previous = 0.0 if known is None else known[0]
        raw = track_f0(history, centres, self._lookahead, previous)
        f0 = pyworld.stonemask(history, raw, times, RATE)
        envelope = pyworld.cheaptrick(history, f0, times, RATE, f0_floor=_F0_FLOOR)
        if known is not None:
            f0 = np.append(known[0], f0)
            envelope = np.vstack([known[1][None], envelope])
        aperiodicity = self._aperiodicity(history, f0, first, None if known is None else known[2])
        self._boundary = (float(f0[-1]), envelope[-1].copy(), aperiodicity[-1].copy())
        return np.ascontiguousarray(f0), envelope, aperiodicity

    @staticmethod
    def _aperiodicity(
        history: np.ndarray, f0: np.ndarray, first: int, known: np.ndarray | None
    ) -> np.ndarray:
        """D4C on the frames on a 10 ms grid (and the last), interpolated between.

        D4C is WORLD's costliest analysis and aperiodicity moves slowly: a 10 ms grid
        halves its cost (about a quarter of the converter's); ``known`` is frame 0's
        value from the previous block.
        """
        n = len(f0)
        ends = (0 if known is None else n - 1, n - 1)  # both ends are always known
        picks = [k for k in range(n) if (first + k) % _AP_STRIDE == 0 or k in ends]
        if known is not None:
            picks = [k for k in picks if k > 0]
        times = (first + np.asarray(picks)) * _HOP / RATE
        coarse = pyworld.d4c(history, np.ascontiguousarray(f0[picks]), times, RATE)
        if known is not None:
            picks, coarse = [0, *picks], np.vstack([known[None], coarse])
        if len(picks) == n:
            return np.ascontiguousarray(coarse)
        position = np.interp(np.arange(n), picks, np.arange(len(picks)))
        low = np.minimum(np.floor(position).astype(np.int64), len(picks) - 2)
        frac = (position - low)[:, None]
        return np.ascontiguousarray(coarse[low] * (1.0 - frac) + coarse[low + 1] * frac)

    @staticmethod
    def _target_f0(f0: np.ndarray, params: VoiceParams) -> np.ndarray:
        voiced = f0 > 0
        if params.flat_hz is not None:
            return np.where(voiced, params.flat_hz, 0.0)
        return f0 * (2.0 ** (params.semitones / 12.0))
