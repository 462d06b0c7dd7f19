"""A/V sync through the server: a flash and a buzz leave the client together each
second and must come back within 45 ms of each other, whichever path is slower."""

from __future__ import annotations

import asyncio
import statistics

import pytest

from mirage.client.probe import Probe
from mirage.engine.capture import CaptureClock
from mirage.state import SERVER
from mirage.tracks.sync import PlayoutClock
from tests.server_fixtures import StartServer, base_url


def test_capture_clock_gives_a_burst_after_a_stall_its_true_age() -> None:
    clock = CaptureClock()
    # 20 ms frames arriving on time (the stamp is the arrival of an undelayed frame)...
    for i in range(50):
        assert clock.capture_time(100.0 + i * 0.02, i * 0.02) == pytest.approx(100.0 + i * 0.02)
    # ...then a 500 ms stall: frames 50..74 all arrive at once, and keep their true age.
    stamps = [clock.capture_time(101.5, (50 + k) * 0.02) for k in range(25)]
    assert stamps[0] == pytest.approx(101.0) and stamps[-1] == pytest.approx(101.48)
    # Jitter never makes a frame look older than it is.
    assert clock.capture_time(102.05, 2.0) == pytest.approx(102.0)


def test_playout_delay_follows_the_slower_track_rises_fast_falls_slowly() -> None:
    now = [100.0]
    clock = PlayoutClock(margin_s=0.0, fall_per_s=0.02, clock=lambda: now[0])
    for _ in range(30):
        clock.observe("video", 0.04)
        clock.observe("audio", 0.19)
    assert clock.delay_s == pytest.approx(0.19)  # at once: no time has passed
    for _ in range(60):
        clock.observe("audio", 0.02)  # the voice got fast: the slower track is now video
    assert clock.delay_s == pytest.approx(0.19)  # no time passed, so no fall yet
    falls = []
    for _ in range(9):
        now[0] += 1.0
        clock.observe("audio", 0.02)
        falls.append(clock.delay_s)
    # 0.02 s per second of the injected clock, down to the video's 0.04 s and no lower.
    want = [0.17, 0.15, 0.13, 0.11, 0.09, 0.07, 0.05, 0.04, 0.04]
    assert falls == pytest.approx(want, abs=1e-9), falls
    assert PlayoutClock(enabled=False).due(1.0, "audio") == 1.0


def test_video_leaves_early_by_its_longer_way_to_the_viewer() -> None:
    clock = PlayoutClock(margin_s=0.0)
    clock.set_downstream("video", 0.02)  # the codec lead alone
    for _ in range(30):
        clock.observe("video", 0.01)
        clock.observe("audio", 0.05)
    assert clock.delay_s == pytest.approx(0.05)
    assert clock.due(1.0, "audio") == pytest.approx(1.05)
    assert clock.due(1.0, "video") == pytest.approx(1.03)
    # The viewer reports 40 ms more after receipt for video and 10 ms for audio: the
    # video leads by 20 + 40 - 10 = 50 ms; the voice keeps its own delay.
    clock.set_downstream("video", 0.06)
    clock.set_downstream("audio", 0.01)
    clock.observe("audio", 0.05)
    assert clock.lead("video") == pytest.approx(0.05) and clock.lead("audio") == 0.0
    assert clock.delay_s == pytest.approx(0.05)
    assert clock.due(1.0, "audio") == pytest.approx(1.05)
    assert clock.due(1.0, "video") == pytest.approx(1.0)  # at once: it is ready by then
    # A slow face sets the delay; the voice is not held a further lead for it.
    for _ in range(30):
        clock.observe("video", 0.1)
    assert clock.delay_s == pytest.approx(0.1)
    assert clock.due(1.0, "audio") == pytest.approx(1.1)
    # Never the other way round (a voice late on the viewer's side is the benign
    # direction), and never more than max_lead_s (a viewer that stalls is no codec).
    clock.set_downstream("audio", 0.2)
    assert clock.lead("video") == 0.0 and clock.lead("audio") == 0.0
    clock.set_downstream("audio", 0.0)
    clock.set_downstream("video", 0.4)
    assert clock.lead("video") == pytest.approx(clock.max_lead_s)
    with pytest.raises(ValueError, match="outside"):
        clock.set_downstream("video", -0.01)
    with pytest.raises(ValueError, match="outside"):
        clock.set_downstream("video", clock.max_delay_s + 0.1)
    off = PlayoutClock(enabled=False)
    off.set_downstream("video", 0.05)
    assert off.due(1.0, "video") == off.due(1.0, "audio") == 1.0


async def test_the_viewer_reports_its_delays(start_server: StartServer) -> None:
    """PATCH receiver_delay_ms sets the video's lead; a bad report is refused and
    changes nothing."""
    import aiohttp

    server = await start_server()
    probe = Probe(base_url(server), options={"face": "passthrough", "voice": "passthrough"})
    try:
        await probe.connect()
        session = server.app[SERVER].sessions[probe.session_id]
        assert session.stats()["video_lead_ms"] == pytest.approx(20.0)  # the codec lead
        url = f"{base_url(server)}/sessions/{probe.session_id}"
        async with aiohttp.ClientSession() as http:
            report = {"receiver_delay_ms": {"video": 35, "audio": 12.5}}
            async with http.patch(url, json=report) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["video_lead_ms"] == pytest.approx(20 + 35 - 12.5)
            for bad, error in [
                ({"video": -1, "audio": 0}, "receiver_delay_ms.video must be 0..400"),
                ({"video": 10, "audio": 401}, "receiver_delay_ms.audio must be 0..400"),
                ({"video": "10", "audio": 0}, "receiver_delay_ms.video must be a number"),
                ({"video": 10}, "receiver_delay_ms must be"),
                ([10, 0], "receiver_delay_ms must be"),
            ]:
                async with http.patch(url, json={"receiver_delay_ms": bad}) as resp:
                    assert resp.status == 400, bad
                    assert error in (await resp.json())["error"], bad
            assert session.stats()["video_lead_ms"] == pytest.approx(42.5)
    finally:
        await probe.close()


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"face": "passthrough", "voice": "dsp"}, id="dsp-voice"),
        pytest.param(
            {"face": "slow", "face_options": {"delay_ms": 100}, "voice": "passthrough"},
            id="video-100ms-slower",
        ),
        pytest.param(
            {"face": "passthrough", "voice": "delay", "voice_options": {"delay_ms": 150}},
            id="audio-150ms-slower",
        ),
    ],
)
async def test_av_skew_within_45_ms(start_server: StartServer, options: dict[str, object]) -> None:
    server = await start_server()
    probe = Probe(base_url(server), sync_marks=True, options=options)
    try:
        await probe.connect()
        for _ in range(200):
            await asyncio.sleep(0.1)
            if len(probe.av_skew()) >= 6:
                break
        skews = probe.av_skew()[1:]  # the first mark may precede the delay's settling
        assert len(skews) >= 4, (
            f"marks did not come back: {probe.received.flashes=} {probe.received.audio_onsets=} {probe.mic.onsets=}"
        )
        median = statistics.median(skews)
        assert abs(median) <= 0.045, f"A/V skew {median * 1000:.0f} ms ({skews})"
        # The server's own view of it is in its stats and /metrics.
        session = server.app[SERVER].sessions[probe.session_id]
        own = []  # the server's own view, sampled: one reading is a frame's worth of jitter
        for _ in range(10):
            await asyncio.sleep(0.1)
            own.append(session.av_skew())
        assert None not in own, own
        assert abs(statistics.median(own)) <= 0.045, f"the server's own skew: {own}"
        assert session.stats()["av_skew_ms"] is not None
        # /metrics publishes the same reading (once a second) in seconds.
        gauge = server.app[SERVER].metrics.registry.get_sample_value(
            "mirage_av_skew_seconds", {"session": probe.session_id}
        )
        assert gauge is not None and abs(gauge) <= 0.1, f"/metrics skew: {gauge} s"
    finally:
        await probe.close()


async def test_a_stall_leaves_no_backlog(start_server: StartServer) -> None:
    """Camera and mic stop for 500 ms, then their held frames arrive in one burst:
    the output must not stall longer than that, nor carry the burst as a backlog."""
    server = await start_server()
    probe = Probe(base_url(server), stall=(4.0, 0.5))
    got = probe.received
    try:
        await probe.connect()
        await asyncio.sleep(8.5)
        assert probe.camera is not None and probe.camera._start is not None
        t0 = probe.camera._start
        timed = list(zip(got.video_times, got.video_latency, strict=True))
        before = [lat for t, lat in timed if t0 + 1.5 < t < t0 + 4.0]
        after = [lat for t, lat in timed if t0 + 5.5 < t < t0 + 8.0]  # from 1 s after the end
        assert len(before) > 20 and len(after) > 20, (len(before), len(after))
        assert statistics.median(after) < statistics.median(before) + 0.05, (before, after)
        assert max(after) < max(before) + 0.1, "a backlog survived the stall"
        # The voice kept going through the stall (silence), never stopping the stream.
        during = [t for t in got.audio_times if t0 + 4.1 < t < t0 + 4.6]
        assert len(during) >= 15, f"audio output stalled: {len(during)} frames in 500 ms"
        late = server.app[SERVER].metrics.registry.get_sample_value(
            "mirage_frames_dropped_total", {"stage": "late", "track": "audio"}
        )
        assert late is not None and late > 0, f"no late audio frame was dropped: {late}"
    finally:
        await probe.close()
