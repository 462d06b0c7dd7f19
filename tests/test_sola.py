"""SolaStream: joins independently converted chunks without clicks."""

from __future__ import annotations

import numpy as np
import pytest

from mirage.models.voice.sola import SolaStream, best_offset, blend
from tests.speech import speech

RATE = 16000
BLOCK, XF, SEARCH = 2560, 160, 160  # 160 ms blocks, 10 ms crossfade, 10 ms search


def _chunks_of(x: np.ndarray, shifts: list[int]) -> list[np.ndarray]:
    """Chunk k of ``x`` as a converter with timing jitter ``shifts[k]`` would give it."""
    size = BLOCK + XF + SEARCH
    return [x[k * BLOCK + s : k * BLOCK + s + size] for k, s in enumerate(shifts)]


def _max_jump(y: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(y))))


def test_push_returns_one_block_and_reports_latency() -> None:
    sola = SolaStream(BLOCK, XF, SEARCH)
    assert sola.latency_samples == XF + SEARCH
    assert sola.chunk_size == BLOCK + XF + SEARCH
    out = sola.push(np.zeros(BLOCK + XF + SEARCH, np.float32))
    assert out.shape == (BLOCK,) and out.dtype == np.float32


def test_consistent_chunks_reconstruct_the_signal_exactly() -> None:
    """Chunks cut from one signal (what a perfect converter gives) come out unchanged."""
    x = speech()
    n = (len(x) - XF - SEARCH) // BLOCK
    sola = SolaStream(BLOCK, XF, SEARCH)
    y = np.concatenate([sola.push(c) for c in _chunks_of(x, [0] * n)])
    np.testing.assert_allclose(y, x[: n * BLOCK], atol=1e-6)


def test_phase_jumps_between_chunks_do_not_click() -> None:
    """A 220 Hz tone whose phase restarts randomly per chunk: butting clicks, SOLA does not."""
    rng = np.random.default_rng(0)
    size = BLOCK + XF + SEARCH
    t = np.arange(size) / RATE
    chunks = [
        (0.5 * np.sin(2 * np.pi * 220 * t + rng.uniform(0, 2 * np.pi))).astype(np.float32)
        for _ in range(12)
    ]
    smooth_step = 0.5 * 2 * np.pi * 220 / RATE  # the tone's own largest sample step
    butted = np.concatenate([c[:BLOCK] for c in chunks])
    assert _max_jump(butted) > 5 * smooth_step  # the test can fail: naive joins click
    sola = SolaStream(BLOCK, XF, SEARCH)
    joined = np.concatenate([sola.push(c) for c in chunks])
    assert _max_jump(joined) < 1.5 * smooth_step
    # Aligned to within a sample, so the level holds through the seams (no comb dip).
    for k in range(1, 12):
        seam = joined[k * BLOCK : k * BLOCK + XF]
        assert np.sqrt(np.mean(seam**2)) > 0.33  # a 0.5 sine has RMS 0.354


def test_jittered_speech_is_realigned() -> None:
    """Speech chunks misaligned by up to ``search`` samples join without new jumps."""
    x = speech()
    rng = np.random.default_rng(1)
    n = (len(x) - XF - SEARCH) // BLOCK
    shifts = [0, *rng.integers(0, SEARCH // 2, n - 1).tolist()]
    sola = SolaStream(BLOCK, XF, SEARCH)
    joined = np.concatenate([sola.push(c) for c in _chunks_of(x, shifts)])
    butted = np.concatenate([c[:BLOCK] for c in _chunks_of(x, shifts)])
    own = _max_jump(x)
    assert _max_jump(joined) <= 1.1 * own
    assert _max_jump(butted) > _max_jump(joined)


def test_silence_stays_silent() -> None:
    sola = SolaStream(BLOCK, XF, SEARCH)
    for _ in range(3):
        assert not np.any(sola.push(np.zeros(sola.chunk_size, np.float32)))


def test_best_offset_finds_a_known_shift() -> None:
    loud = int(np.argmax(np.abs(speech())))
    x = speech()[loud : loud + XF + SEARCH].astype(np.float32)
    tail = x[37 : 37 + XF]
    assert best_offset(x, tail, SEARCH) == 37
    assert best_offset(x, np.zeros(XF, np.float32), SEARCH) == 0


def test_reset_starts_a_new_stream() -> None:
    sola = SolaStream(BLOCK, XF, SEARCH)
    ones = np.ones(sola.chunk_size, np.float32)
    sola.push(-ones)
    sola.reset()
    np.testing.assert_array_equal(sola.push(ones), ones[:BLOCK])


def test_wrong_chunk_length_is_refused() -> None:
    sola = SolaStream(BLOCK, XF, SEARCH)
    with pytest.raises(ValueError, match="wants 2880 samples"):
        sola.push(np.zeros(BLOCK, np.float32))


@pytest.mark.parametrize("args", [(0, 10, 10), (100, -1, 10), (100, 10, -1), (100, 200, 0)])
def test_bad_sizes_are_refused(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        SolaStream(*args)


def test_zero_crossfade_and_search_butt_chunks() -> None:
    sola = SolaStream(4, 0, 0)
    assert sola.latency_samples == 0
    np.testing.assert_array_equal(sola.push(np.arange(4.0)), np.arange(4.0))


def test_blend_keeps_the_level_of_unaligned_signals() -> None:
    """Out of phase by a quarter period, a plain fade dips by 3 dB mid-seam; blend does not."""
    t = np.arange(XF) / RATE
    tail = np.sin(2 * np.pi * 400 * t).astype(np.float32)
    head = np.cos(2 * np.pi * 400 * t).astype(np.float32)
    fade_in = np.sin(0.5 * np.pi * (np.arange(XF) + 0.5) / XF) ** 2
    middle = slice(XF // 2 - 20, XF // 2 + 20)
    plain = head * fade_in + tail * (1 - fade_in)
    assert np.sqrt(np.mean(plain[middle] ** 2)) < 0.55  # a 0.707-RMS sine, dipped
    kept = blend(head, tail, fade_in)
    assert 0.65 < np.sqrt(np.mean(kept[middle] ** 2)) < 0.76
    # In phase, blend is the plain cross-fade.
    np.testing.assert_allclose(blend(tail, tail, fade_in), tail, atol=1e-6)
    # A silent side cannot cancel: nothing is scaled.
    silent = np.zeros(XF, np.float32)
    np.testing.assert_allclose(blend(head, silent, fade_in), head * fade_in, atol=1e-6)
