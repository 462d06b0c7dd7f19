"""The voice track's pacing: a block the converter finishes late, but still in time to
be sent, goes out late instead of a gap of silence; a stalled converter gets silence,
so the sender never stops."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

from mirage.metrics import Metrics
from mirage.models.voice.passthrough import PassthroughConverter
from mirage.tracks.audio import VoiceAudioTrack
from mirage.tracks.sync import PlayoutClock

RATE = 48000
FRAME = RATE // 50


class PacedTone(MediaStreamTrack):
    """A microphone: 20 ms frames of a quiet tone, each at its wall-clock time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n * FRAME / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(FRAME) + self._n * FRAME) / RATE
        pcm = (3000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._n * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += 1
        return frame


class SlowBlocks(PassthroughConverter):
    """Passthrough that takes ``slow[i]`` seconds over block ``i`` (the worker thread)."""

    def __init__(self, slow: dict[int, float]) -> None:
        super().__init__()
        self._slow = slow
        self._i = 0

    def convert(self, block: np.ndarray) -> np.ndarray:
        time.sleep(self._slow.get(self._i, 0.0))
        self._i += 1
        return block


async def _run(slow: dict[int, float], frames: int) -> tuple[float, list[float]]:
    """Silence frames sent while the converter was late, and the send times."""
    metrics = Metrics()
    track = VoiceAudioTrack(
        PacedTone(),
        SlowBlocks(slow),
        "test",
        clock=PlayoutClock(),
        metrics=metrics,
        backlog_ms=200.0,
    )
    track.start()
    sent = []
    try:
        for _ in range(frames):
            await track.recv()
            sent.append(time.monotonic())
    finally:
        track.stop()
        await track.wait_stopped()
    return metrics.frames_filled.labels("audio")._value.get(), sent


def test_a_block_late_but_in_time_to_send_leaves_no_gap_of_silence() -> None:
    # Three blocks 27 ms late: past the 20 ms slot, within the 30 ms the track still
    # sends late audio. Before, each went out after a frame of silence: a gap heard
    # as a click, and the voice a frame behind until the next fall of the delay.
    slow = {60: 0.027, 90: 0.027, 120: 0.027}
    filled, _ = asyncio.run(_run(slow, 150))
    assert filled == 0


def test_a_stalled_converter_gets_silence_and_the_sender_never_stops() -> None:
    filled, sent = asyncio.run(_run({60: 0.3}, 110))
    assert filled >= 8  # 300 ms of stall, less the 30 ms the track waits
    gaps = np.diff(sent[50:])
    assert gaps.max() < 0.06, gaps.max()
