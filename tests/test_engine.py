"""The engine's bounded pieces, without WebRTC: slots, rings, the audio pipeline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from mirage.engine.audio import OUTPUT_RATE, Chunk, OutputRing, VoicePipeline
from mirage.engine.latest import LatestSlot
from mirage.models import create_animator, create_converter
from mirage.models.base import FaceAnimator, UnknownBackend, VoiceConverter


def test_latest_slot_keeps_only_the_newest_and_counts_drops() -> None:
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0) == 4
    assert slot.dropped == 4
    assert slot.take(0) is None


def test_latest_slot_take_waits_and_close_wakes() -> None:
    slot: LatestSlot[int] = LatestSlot()
    threading.Timer(0.05, slot.put, args=(7,)).start()
    assert slot.take(2.0) == 7
    threading.Timer(0.05, slot.close).start()
    t0 = time.monotonic()
    assert slot.take(5.0) is None
    assert time.monotonic() - t0 < 1.0


def test_output_ring_drops_oldest_beyond_its_bound() -> None:
    ring = OutputRing(max_samples=1000)
    ring.push(np.arange(800, dtype=np.float32), capture=1.0)
    dropped = ring.push(np.arange(800, 1600, dtype=np.float32), capture=2.0)
    assert dropped == 600 and len(ring) == 1000
    out, capture = ring.pop(300)
    assert out[0] == 600 and len(out) == 300  # the live edge survived, the oldest went
    assert capture == pytest.approx(1.0 + 600 / OUTPUT_RATE)
    rest, _ = ring.pop(5000)
    assert len(rest) == 700 and rest[-1] == 1599
    empty, none = ring.pop(10)
    assert len(empty) == 0 and none is None


def test_passthrough_pipeline_is_exact_at_48k() -> None:
    pipe = VoicePipeline(create_converter("passthrough"), 1000, lambda e: None, lambda s, t: None)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 960 * 10).astype(np.float32)
    for i in range(10):
        pipe.push(Chunk(x[i * 960 : (i + 1) * 960], 48000, float(i)))
    out, capture = pipe.ring.pop(960 * 10)
    np.testing.assert_array_equal(out, x)
    assert capture == pytest.approx(-959 / 48000)  # the first sample, 20 ms before the chunk end


def test_pipeline_resamples_16k_input_and_falls_back_on_errors() -> None:
    errors: list[Exception] = []
    conv = create_converter("failing", every=2)
    pipe = VoicePipeline(conv, 1000, errors.append, lambda s, t: None)
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    for i in range(50):
        pipe.push(Chunk(tone[i * 320 : (i + 1) * 320], 16000, float(i)))
    out, _ = pipe.ring.pop(48000)
    assert len(errors) >= 10  # every second block failed ...
    assert len(out) > 40000  # ... and audio still flowed
    spectrum = np.abs(np.fft.rfft(out[4800:40000]))
    peak_hz = np.argmax(spectrum) * OUTPUT_RATE / len(out[4800:40000])
    assert abs(peak_hz - 300) < 5


def test_registry_makes_backends_by_name_and_rejects_unknown() -> None:
    animator = create_animator("invert")
    assert isinstance(animator, FaceAnimator)
    img = np.full((480, 640, 3), 10, np.uint8)
    out = animator.animate(img, 256)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8 and out[0, 0, 0] == 245
    assert isinstance(create_converter("passthrough"), VoiceConverter)
    with pytest.raises(UnknownBackend, match="known: passthrough"):
        create_animator("nope")


@pytest.mark.parametrize(
    ("fmt", "layout", "rate"),
    [("s16", "stereo", 48000), ("s16", "mono", 16000), ("fltp", "stereo", 48000)],
)
def test_any_input_frame_becomes_mono_float(fmt: str, layout: str, rate: int) -> None:
    from av import AudioFrame

    from mirage.tracks.pcm import to_mono_float

    n = rate // 50
    left = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    right = np.zeros(n)
    channels = [left, right] if layout == "stereo" else [left]
    if fmt == "s16":
        data = (np.stack(channels, axis=1).reshape(1, -1) * 32767).astype(np.int16)
    else:
        data = np.stack(channels).astype(np.float32)
    frame = AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate = rate
    mono = to_mono_float(frame)
    expected = np.mean(channels, axis=0)
    assert mono.dtype == np.float32 and mono.shape == (n,)
    np.testing.assert_allclose(mono, expected, atol=1e-3)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(48000, 16000), (16000, 48000), (44100, 16000)])
def test_streaming_resampler_is_accurate_and_prompt(rate_in: int, rate_out: int) -> None:
    from mirage.engine.resample import Resampler

    resample = Resampler(rate_in, rate_out)
    t = np.arange(rate_in) / rate_in
    tone = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    step = rate_in // 50
    chunks = [resample(tone[i : i + step]) for i in range(0, len(tone) - step + 1, step)]
    out = np.concatenate(chunks)
    assert abs(len(out) - rate_out) < rate_out * 0.05  # nothing piles up inside
    spectrum = np.abs(np.fft.rfft(out[len(out) // 4 :]))
    peak_hz = np.argmax(spectrum) * rate_out / len(out[len(out) // 4 :])
    assert abs(peak_hz - 300) < 3
    if rate_in % rate_out == 0 or rate_out % rate_in == 0:
        assert {len(c) for c in chunks} == {step * rate_out // rate_in}  # every chunk, at once


def _click_track(chunks: int, click_at: int) -> list[Chunk]:
    """20 ms chunks of 48 kHz silence with one band-limited click at sample ``click_at``;
    chunk ``i`` ends (its last sample is captured) at ``100 + 0.02 * (i + 1)`` s."""
    t = np.arange(960 * chunks) - click_at
    x = (0.5 * np.sinc(t / 4.0) * np.exp(-((t / 200.0) ** 2))).astype(np.float32)
    return [Chunk(x[i * 960 : (i + 1) * 960], 48000, 100 + 0.02 * (i + 1)) for i in range(chunks)]


def _click_capture(make: Callable[[], VoiceConverter], click_at: int = 9000) -> tuple[float, int]:
    """The capture time the ring stamps on the click's output peak, and samples out."""

    def run() -> VoicePipeline:
        pipe = VoicePipeline(make(), 2000, lambda e: None, lambda s, t: None)
        for chunk in _click_track(30, click_at):
            pipe.push(chunk)
        return pipe

    first = run()
    size = len(first.ring)
    peak = int(np.argmax(first.ring.pop(size)[0]))
    again = run()  # the same stream: pop up to the peak, then read the peak's own stamp
    again.ring.pop(peak)
    _, stamp = again.ring.pop(1)
    assert stamp is not None
    return stamp, size


@pytest.mark.parametrize("block", [16, 80, 112, 160, 320, 2560])
def test_any_block_size_keeps_the_stream_and_its_clock(block: int) -> None:
    """Blocks of 1, 5, 7, 10, 20 and 160 ms at 16 kHz (smaller than a 20 ms frame, or
    not dividing it): every whole block is converted at once, and the capture time
    stamped on the output is the click's own, the resamplers' 2 ms included."""
    from mirage.models.voice.passthrough import PassthroughConverter

    assert PassthroughConverter(16000, block_ms=block / 16).block_size == block
    stamped, size = _click_capture(lambda: PassthroughConverter(16000, block_ms=block / 16))
    assert size == (30 * 320 // block) * block * 3  # no block waits for a later chunk
    click = 100 + 0.02 - 959 / 48000 + 9000 / 48000  # capture time of input sample 9000
    assert abs(stamped - click) <= 1.5 / 16000


def test_dsp_stamps_output_with_its_input_capture_time() -> None:
    """The default voice at its 10 ms blocks: latency_s (+ the resamplers) maps output
    back to the input it came from, to within a sample."""
    stamped, _ = _click_capture(lambda: create_converter("dsp"))  # neutral: exact delay
    click = 100 + 0.02 - 959 / 48000 + 9000 / 48000
    assert abs(stamped - click) <= 1.5 / 16000
