"""The one fan-out (``tracks/fanout.py``) and its one bounded buffer
(``engine/dropoldest.py``), shared by the server's outputs and the client's hubs, and
the rule they rest on: a frame a track returned is never changed again, and no two
consumers share a frame object. (The server's taps on live tracks: tests/test_whip.py.)"""

from __future__ import annotations

import asyncio
import fractions

import numpy as np
import pytest
from av import AudioFrame, VideoFrame

from mirage.client.hub import Hub, Timeline
from mirage.client.probe import SyntheticCamera
from mirage.engine.adapt import QualityController
from mirage.engine.dropoldest import DropOldest
from mirage.metrics import Metrics
from mirage.models.avatar.passthrough import PassthroughAnimator
from mirage.tracks.fanout import FanOut, Frame, copy_frame
from mirage.tracks.sync import PlayoutClock
from mirage.tracks.video import AvatarVideoTrack


def test_drop_oldest_bounds_items_or_seconds_and_keeps_the_newest() -> None:
    frames: DropOldest[int] = DropOldest(max_items=2)
    assert [frames.append(n) for n in range(4)] == [0, 0, 1, 1]
    assert list(frames) == [2, 3] and frames.dropped == 2
    audio: DropOldest[float] = DropOldest(max_s=0.1, seconds_of=lambda s: s)
    assert sum(audio.append(0.02) for _ in range(5)) == 0, "5 × 20 ms fit in 100 ms"
    assert audio.append(0.02) == 1 and len(audio) == 5
    assert audio.append(0.5) == 5 and list(audio) == [0.5], "the newest always stays"
    assert audio.popleft() == 0.5 and audio.seconds == 0.0
    tenths: DropOldest[float] = DropOldest(max_s=0.3, seconds_of=lambda s: s)
    assert sum(tenths.append(0.1) for _ in range(3)) == 0, "0.1 + 0.1 + 0.1 fit in 0.3"
    with pytest.raises(ValueError, match="bound"):
        DropOldest()


def test_each_consumer_gets_its_own_frame() -> None:
    """The first consumer the frame itself, the others a copy each, so that one encoder
    rebasing its frame's pts (PyAV does) cannot move another's."""
    fanout = FanOut("audio")
    first, second = fanout.subscribe(), fanout.subscribe()
    heard: list[Frame] = []
    fanout.listen(heard.append)
    pcm = np.arange(960, dtype=np.int16).reshape(1, -1)
    frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = 48000, 960, fractions.Fraction(1, 48000)
    fanout.push(frame)
    got = [first._items[0][0], second._items[0][0], heard[0]]
    assert got[0] is frame and len({id(f) for f in got}) == 3
    for copy in got[1:]:
        assert isinstance(copy, AudioFrame) and copy.sample_rate == 48000
        assert (copy.pts, copy.time_base) == (960, fractions.Fraction(1, 48000))
        assert np.array_equal(copy.to_ndarray(), pcm)
    got[1].pts = 7
    assert frame.pts == 960 and got[2].pts == 960
    picture = VideoFrame.from_ndarray(np.full((8, 8, 3), 9, np.uint8), format="rgb24")
    picture.pts = 3
    twin = copy_frame(picture)
    assert twin is not picture and twin.pts == 3 and twin.to_ndarray()[0, 0, 0] == 9


async def test_the_client_hub_is_the_fanout_restamped() -> None:
    hub = Hub("video", Timeline())
    tap = hub.subscribe()
    heard: list[Frame] = []
    hub.listen(heard.append)
    frame = VideoFrame(16, 16, "rgb24")
    hub.push(frame)
    sent = await tap.recv()
    assert sent is frame and heard[0] is not frame and heard[0].pts == frame.pts is not None
    hub.end()
    assert hub.subscribe().readyState == "ended"


async def test_the_avatar_track_never_changes_a_frame_it_returned() -> None:
    """A camera slower than the output: ``recv`` repeats its last picture. Each repeat
    is a new frame; no frame handed out before changes its timestamp afterwards."""
    camera = SyntheticCamera(size=64, fps=4.0)
    metrics = Metrics()
    track = AvatarVideoTrack(
        camera,
        PassthroughAnimator(),
        "passthrough",
        controller=QualityController(),
        clock=PlayoutClock(enabled=False),
        metrics=metrics,
    )
    track.start()
    try:
        sent: list[tuple[VideoFrame, int | None]] = []
        for _ in range(12):
            frame = await asyncio.wait_for(track.recv(), 5.0)
            sent.append((frame, frame.pts))
    finally:
        track.stop()
        camera.stop()
    repeats = metrics.registry.get_sample_value("mirage_frames_filled_total", {"track": "video"})
    assert repeats is not None and repeats >= 3, "the camera is slow: some frames repeat"
    assert len({id(frame) for frame, _ in sent}) == len(sent), "a frame object was re-sent"
    assert [frame.pts for frame, _ in sent] == [pts for _, pts in sent]
    stamps = [pts for _, pts in sent]
    assert all(isinstance(p, int) for p in stamps) and stamps == sorted(set(stamps))  # type: ignore[type-var]
