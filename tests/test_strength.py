"""The suppressor's strength follows the input's SNR: a clean input passes it
untouched (only delayed), a noisy one is suppressed in full, and the crossfade
between them is a per-sample ramp at a constant delay.

Real speech (espeak-ng), a generated fan, the real WebRTC suppressor.
"""

from __future__ import annotations

import numpy as np
import pytest

from mirage.engine.denoise import DEFAULT_LEVEL, FRAME, NS_DELAY, FrameSuppressor
from mirage.engine.strength import StrengthTiming
from mirage.engine.voicechain import CleanVoice
from mirage.models.voice.passthrough import PassthroughConverter
from tests.speech import speech
from tests.test_voicechain import fan, lag_ms, stream

RATE = 16000


def talk(seconds_of_silence: float = 0.5) -> np.ndarray:
    """Two sentences (~7 s) after a short silence, peaking at 0.3."""
    words = speech()
    x = np.concatenate([np.zeros(round(seconds_of_silence * RATE), np.float32), words, words])
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    active = clean[np.abs(clean) > 1e-4]
    gain = np.sqrt(np.mean(active**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (clean + gain * noise[: len(clean)]).astype(np.float32)


def frames(ns: FrameSuppressor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` through ``ns`` 10 ms at a time: (the audio, the per-sample strengths)."""
    done = [ns(x[i : i + FRAME]) for i in range(0, len(x) // FRAME * FRAME, FRAME)]
    return np.concatenate([d.audio for d in done]), np.concatenate([d.strength for d in done])


def test_clean_speech_passes_the_suppressor_untouched_only_delayed() -> None:
    x = talk()
    out, strength = frames(FrameSuppressor(DEFAULT_LEVEL), x)
    settled = 2 * RATE  # the estimate has seen speech over silence; the release is 1 s
    assert np.all(strength[settled:] == 0.0), f"strength {strength[settled:].max():.3f}"
    np.testing.assert_array_equal(out[settled:], x[settled - NS_DELAY : len(out) - NS_DELAY])


def test_noisy_speech_is_suppressed_in_full() -> None:
    clean = talk()
    x = at_snr(clean, fan(len(clean) / RATE + 1, RATE, rms=0.1, seed=3), 10.0)
    ns = FrameSuppressor(DEFAULT_LEVEL)
    out, strength = frames(ns, x)
    assert np.all(strength == 1.0), f"strength fell to {strength.min():.3f}"
    assert ns.strength.snr_db < 30.0
    # The first silence holds only the fan: the suppressor takes most of it away.
    pause = slice(RATE // 4, RATE // 2)
    cut_db = 10 * np.log10(np.mean(out[pause] ** 2) / np.mean(x[pause] ** 2))
    assert cut_db < -10.0, f"the fan came through at {cut_db:.1f} dB"


def test_a_quiet_microphone_is_still_suppressed_in_full() -> None:
    """Speech over a -60 dBFS hiss floor (a quiet room's microphone) reads ~40 dB:
    the suppressor helps there (docs/benchmarks.md), so it never lets go of it."""
    clean = talk()
    hiss = np.random.default_rng(6).standard_normal(len(clean)) * 10 ** (-60 / 20)
    ns = FrameSuppressor(DEFAULT_LEVEL)
    _, strength = frames(ns, (clean + hiss).astype(np.float32))
    assert np.all(strength == 1.0), f"strength fell to {strength.min():.3f}"
    assert 35.0 < ns.strength.snr_db < 50.0


def test_noise_that_starts_is_suppressed_within_seconds_without_a_step() -> None:
    """Clean speech, then a fan starts under it at 10 dB SNR: the strength climbs
    back to full within the floor's memory (3 s) plus the attack, in a ramp whose
    per-sample step is never larger than a full sweep spread over the attack."""
    clean = np.concatenate([talk(), talk(0.0)])
    noise = fan(len(clean) / RATE, RATE, rms=0.1, seed=4)
    start = 5 * RATE
    noise[:start] = 0.0
    x = at_snr(clean, noise, 10.0)
    timing = StrengthTiming()
    _, strength = frames(FrameSuppressor(DEFAULT_LEVEL, timing), x)
    assert strength[start - 1] == 0.0  # bypassed while clean
    within = start + round((timing.floor_s + timing.attack_s + 0.5) * RATE)
    assert np.all(strength[within:] == 1.0), f"strength {strength[within:].min():.3f}"
    largest = 1.0 / (timing.attack_s * RATE)  # one sweep over attack_s, sample by sample
    assert np.max(np.abs(np.diff(strength))) <= largest * 1.0001


@pytest.mark.parametrize("rate", [16000, 48000])
def test_the_delay_is_the_same_bypassed_or_suppressed(rate: int) -> None:
    """The chain's reported delay is the measured one on a clean input (the bypass)
    and on a noisy one (the suppressor), so the strength never moves audio in time."""
    clean = talk()
    noisy = at_snr(clean, fan(len(clean) / RATE, RATE, rms=0.1, seed=5), 10.0)
    for x in (clean, noisy):
        if rate != RATE:
            import soxr

            x = soxr.resample(x, RATE, rate).astype(np.float32)
        chain = CleanVoice(PassthroughConverter(rate, 10.0), DEFAULT_LEVEL)
        measured = lag_ms(x, stream(chain, x), rate)
        assert measured == pytest.approx(chain.delay_s * 1000, abs=2.0)
