"""The desktop client and the relay API against a real in-process server: real
aiortc peers, real codecs, real mp4s; virtual devices replaced only at the device
boundary (pyvirtualcam's backend, the audio output stream)."""

from __future__ import annotations

import asyncio
import base64
import fractions
import functools
import hashlib
import hmac
import importlib.util
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aiohttp import web
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from mirage.client.connect import Backoff, ClientOptions
from mirage.client.desktop import EXIT_DEVICE, EXIT_OK, EXIT_REFUSED, DesktopOptions, run_client
from mirage.client.hub import AHEAD_S, Hub, Timeline
from mirage.client.probe import BeepMicrophone, SyntheticCamera, draw_id, read_id
from mirage.client.relay import LocalRelay, MirageRelay
from mirage.client.sinks import DeviceMissing, VirtualCamera
from mirage.models.avatar.passthrough import fit_square
from mirage.state import SERVER
from tests.conftest import MEDIA
from tests.server_fixtures import LOOPBACK, StartServer, base_url

ROOT = Path(__file__).resolve().parents[1]
SOURCE = MEDIA / "d19.mp4"  # 8.3 s, 480×480 at 30 fps; its audio track is silent


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s talking clip: the driving video (240×240, 15 fps) with espeak-ng speech."""
    from tests.speech import speech

    path = tmp_path_factory.mktemp("client") / "talking.mp4"
    voice = np.tile(speech(rate=48000), 2)[: 6 * 48000]
    with av.open(str(SOURCE)) as src, av.open(str(path), "w") as dst:
        video = dst.add_stream("libx264", rate=15)
        video.width = video.height = 240
        video.pix_fmt = "yuv420p"
        audio = dst.add_stream("aac", rate=48000, layout="mono")
        for n, frame in enumerate(src.decode(video=0)):
            if n >= 180:
                break
            if n % 2 == 0:
                small_frame = frame.reformat(width=240, height=240, format="yuv420p")
                small_frame.pts, small_frame.time_base = n // 2, fractions.Fraction(1, 15)
                dst.mux(video.encode(small_frame))
        dst.mux(video.encode(None))
        pcm = (voice * 32767).astype(np.int16)
        for at in range(0, len(pcm), 960):
            chunk = av.AudioFrame.from_ndarray(
                pcm[None, at : at + 960], format="s16", layout="mono"
            )
            chunk.sample_rate, chunk.pts = 48000, at
            dst.mux(audio.encode(chunk))
        dst.mux(audio.encode(None))
    return path


def loopback(url: str, **changes: Any) -> ClientOptions:
    return ClientOptions(url, ice_hosts=("127.0.0.1",), **changes)


def small(arr: np.ndarray) -> np.ndarray:
    return fit_square(arr, 64).astype(np.int16)


@functools.cache
def clip_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a clip, square-cropped to 64×64 as the server's backends see it."""
    with av.open(str(path)) as container:
        return [small(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def inversion_errors(image: np.ndarray, clip: Path) -> tuple[float, float]:
    """(error vs the best-matching inverted clip frame, vs the best plain clip frame)."""
    got = small(image)
    inverted = min(float(np.abs(got - (255 - f)).mean()) for f in clip_frames(clip))
    plain = min(float(np.abs(got - f).mean()) for f in clip_frames(clip))
    return inverted, plain


async def until(done: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not done() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


# -- the fake device boundaries ----------------------------------------------------------
class FakeCameraBackend:
    """Stands where pyvirtualcam's v4l2loopback/OBS backend stands; records what it gets."""

    made: list[FakeCameraBackend] = []  # noqa: RUF012 - reset by each test that uses it

    def __init__(
        self, *, width: int, height: int, fps: float, fourcc: int, device: str | None
    ) -> None:
        self.args = {"width": width, "height": height, "fps": fps, "fourcc": fourcc}
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.closed = False
        FakeCameraBackend.made.append(self)

    def send(self, frame: np.ndarray) -> None:
        import time

        self.frames.append(frame.copy())
        self.times.append(time.monotonic())

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return "/dev/video-fake"

    def native_fourcc(self) -> None:
        return None


class MissingCameraBackend(FakeCameraBackend):
    def __init__(self, **kwargs: Any) -> None:
        raise RuntimeError("No v4l2 loopback device found at /dev/video[0-99].")


class FakeOutputStream:
    def __init__(self, device: str | None) -> None:
        self.device = device
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_pyvirtualcam() -> Any:
    pyvirtualcam = pytest.importorskip("pyvirtualcam")
    FakeCameraBackend.made = []
    pyvirtualcam.register_backend("mirage-fake", FakeCameraBackend)
    pyvirtualcam.register_backend("mirage-missing", MissingCameraBackend)
    yield pyvirtualcam
    for name in ("mirage-fake", "mirage-missing"):
        pyvirtualcam.camera.BACKENDS.pop(name, None)


# -- the pieces --------------------------------------------------------------------------
def test_backoff_grows_exponentially_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(initial_s=0.5, factor=2.0, max_s=4.0, jitter=0.25)
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, base in zip(delays, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0], strict=True):
        assert base * 0.75 <= delay <= base * 1.25
    assert backoff.next_delay(at_least=30.0) == 30.0  # the server's Retry-After wins
    backoff.reset()
    assert backoff.next_delay() <= 0.625


async def test_hub_bounds_its_subscribers_and_keeps_time_across_gaps() -> None:
    timeline = Timeline()
    video, audio = Hub("video", timeline), Hub("audio", timeline, max_audio_ms=100)
    v_track, a_track = video.subscribe(), audio.subscribe()
    for _ in range(5):
        video.push(VideoFrame(16, 16, "rgb24"))
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        frame.sample_rate = 48000
        audio.push(frame)
        await asyncio.sleep(0.02)  # audio at its own pace (far ahead of it is dropped)
    assert v_track.dropped == 4 and a_track.dropped == 0  # 5 × 20 ms fit in 100 ms
    for _ in range(3):
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        frame.sample_rate = 48000
        audio.push(frame)
        await asyncio.sleep(0.02)
    assert a_track.dropped == 3, "the oldest audio goes first"
    got = [await a_track.recv() for _ in range(5)]
    assert [f.pts for f in got] == [960 * n for n in range(3, 8)]
    slow = AudioFrame.from_ndarray(np.zeros((1, 320), np.int16), format="s16", layout="mono")
    slow.sample_rate = 16000  # any source's rate: resampled to the client's 48 kHz
    for _ in range(5):
        audio.push(slow)
    resampled = [await a_track.recv() for _ in range(2)]
    assert all(f.sample_rate == 48000 for f in resampled)
    video.end()
    assert (await v_track.recv()).pts is not None
    with pytest.raises(MediaStreamError):
        await v_track.recv()


async def test_hub_audio_fills_a_stall_drops_what_runs_ahead_and_jumps_after_a_gap() -> None:
    """A stall (a busy event loop) delivers its audio late, in one burst: stamped back to
    back it fills the stall and ends in step with the wall clock. Audio that comes early
    is dropped beyond AHEAD_S. Audio that never comes (a reconnection) leaves the stamps
    behind; after GAP_S they jump to the wall clock."""
    timeline = Timeline()
    audio = Hub("audio", timeline)

    def voice() -> AudioFrame:
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        frame.sample_rate = 48000
        audio.push(frame)
        return frame

    first = voice()
    await asyncio.sleep(0.3)
    burst = [voice() for _ in range(15)]
    assert [f.pts for f in burst] == [first.pts + 960 * n for n in range(1, 16)]
    lead = burst[-1].pts / 48000 + 0.02 - timeline.now()
    assert abs(lead) < 0.05, f"the burst ends {lead * 1000:.0f} ms off the wall clock"

    # A sender running early (the server's voice as its playout delay falls): what
    # runs more than AHEAD_S ahead of the wall clock is dropped.
    early = [voice() for _ in range(20)]
    kept = [f for f in early if f.pts is not None]  # a dropped frame is never stamped
    lead = kept[-1].pts / 48000 + 0.02 - timeline.now()
    assert audio.dropped_ahead == 20 - len(kept) >= 10, f"{len(kept)} of 20 early frames kept"
    assert lead < AHEAD_S + 0.03, f"the audio runs {lead * 1000:.0f} ms ahead"
    assert [f.pts for f in kept] == [burst[-1].pts + 960 * n for n in range(1, len(kept) + 1)]

    await asyncio.sleep(0.5)
    late, late_at = voice(), timeline.now()
    assert late.pts == kept[-1].pts + 960, "one late frame alone is not a gap"
    paced = [late]
    while timeline.now() < late_at + 0.25:  # behind for longer than GAP_S
        await asyncio.sleep(0.02)
        paced.append(voice())
    lag = timeline.now() - paced[-1].pts / 48000 - 0.02
    assert abs(lag) < 0.15, f"audio {lag * 1000:.0f} ms behind the wall clock after a gap"


def test_pacat_stream_plays_into_the_named_sink_or_says_how_to_make_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pactl`` and ``pacat`` replaced by scripts: the PulseAudio boundary."""
    from mirage.client.sinks import PacatStream

    played = tmp_path / "played.raw"
    (tmp_path / "pactl").write_text(
        "#!/bin/sh\nprintf '7\\tmirage_mic\\tmodule-null-sink.c\\ts16le 2ch 48000Hz\\tIDLE\\n'\n"
    )
    (tmp_path / "pacat").write_text(f'#!/bin/sh\necho "$@" > {played}.args\ncat > {played}\n')
    for name in ("pactl", "pacat"):
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    stream = PacatStream("mirage_mic")
    stream.write(b"\x01\x02" * 960)
    stream.close()
    assert played.read_bytes() == b"\x01\x02" * 960
    args = Path(f"{played}.args").read_text()
    assert "--device=mirage_mic" in args and "--rate=48000" in args and "--channels=1" in args
    with pytest.raises(DeviceMissing, match="module-null-sink sink_name=other_mic"):
        PacatStream("other_mic")


# -- the desktop client ------------------------------------------------------------------
async def test_client_records_the_avatar_and_voice_in_step(
    start_server: StartServer, tmp_path: Path, clip: Path
) -> None:
    server = await start_server()
    out = tmp_path / "out.mp4"
    err = io.StringIO()
    options = DesktopOptions(
        loopback(base_url(server), face="invert", voice="dsp"),
        input=str(clip),
        record=str(out),
        size=256,
        duration_s=4.0,
    )
    status = await run_client(options, err)
    log = err.getvalue()
    assert status == EXIT_OK, log
    assert "connected: session" in log and "recv" in log and "[connected]" in log
    await until(lambda: not server.app[SERVER].sessions, 3.0)
    assert not server.app[SERVER].sessions, "the client did not end its session"

    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert container.streams.audio, "no audio track recorded"
        assert (video.codec_context.width, video.codec_context.height) == (256, 256)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        video_end = max(0.0, float(video.start_time * video.time_base)) + float(
            video.duration * video.time_base
        )
    with av.open(str(out)) as container:
        pcm = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert len(frames) >= 20, f"only {len(frames)} avatar frames recorded"
    for image in frames[len(frames) // 3 :: max(1, len(frames) // 6)]:
        inverted, plain = inversion_errors(image, clip)
        assert inverted < 20 and plain > inverted + 40, (inverted, plain)
    audio_s = len(pcm) / 48000
    assert 2.0 < audio_s < 4.5, f"{audio_s:.2f} s of audio in a 4 s run"
    assert abs(audio_s - video_end) < 0.3, f"audio {audio_s:.2f} s, video to {video_end:.2f} s"
    assert float(np.sqrt(np.mean(pcm[-48000:] ** 2))) > 0.005, "the recorded voice is silent"


async def test_virtual_camera_and_mic_get_frames_at_their_size_and_rate(
    start_server: StartServer, fake_pyvirtualcam: Any, clip: Path
) -> None:
    from mirage.client.sinks import _pyvirtualcam_camera

    server = await start_server(face="invert")
    streams: list[FakeOutputStream] = []

    def stream(device: str | None) -> FakeOutputStream:
        streams.append(FakeOutputStream(device))
        return streams[-1]

    err = io.StringIO()
    options = DesktopOptions(
        loopback(base_url(server), reference=str(MEDIA / "s0.jpg")),
        input=str(clip),
        virtual_camera=True,
        virtual_mic=True,
        size=320,
        fps=20.0,
        duration_s=4.0,
        camera_factory=functools.partial(_pyvirtualcam_camera, backend="mirage-fake"),
        stream_factory=stream,
    )
    assert await run_client(options, err) == EXIT_OK, err.getvalue()
    assert "virtual camera: /dev/video-fake" in err.getvalue()
    [camera] = FakeCameraBackend.made
    rgb = fake_pyvirtualcam.util.encode_fourcc(fake_pyvirtualcam.PixelFormat.RGB.value)
    assert camera.args == {"width": 320, "height": 320, "fps": 20.0, "fourcc": rgb}
    assert camera.closed
    assert len(camera.frames) >= 20, f"{len(camera.frames)} frames reached the camera"
    assert all(f.shape == (320 * 320 * 3,) for f in camera.frames)
    inverted, plain = inversion_errors(camera.frames[-1].reshape(320, 320, 3), clip)
    assert inverted < 20 and plain > inverted + 40, (inverted, plain)
    # The camera gets what the server sent, once each, but for the few in flight at the
    # end (its speed is a benchmark's business). Counted apart, by the server, a lost or
    # doubled frame shows here.
    sent = server.app[SERVER].metrics.registry.get_sample_value(
        "mirage_frames_out_total", {"track": "video"}
    )
    assert sent is not None and 0.85 * sent <= len(camera.frames) <= sent, (
        f"{len(camera.frames)} frames reached the camera of {sent} the server sent"
    )
    [mic] = streams
    assert mic.device == "mirage_mic" and mic.closed
    seconds = len(mic.data) / 2 / 48000  # s16 mono
    assert 2.0 < seconds < 4.5, f"{seconds:.2f} s of voice reached the virtual mic"
    pcm = np.frombuffer(bytes(mic.data), np.int16).astype(np.float32) / 32768
    assert float(np.sqrt(np.mean(pcm**2))) > 0.005


async def test_missing_virtual_camera_says_how_to_create_it(
    fake_pyvirtualcam: Any, clip: Path
) -> None:
    from mirage.client.sinks import _pyvirtualcam_camera

    with pytest.raises(DeviceMissing, match="modprobe v4l2loopback devices=1 exclusive_caps=1"):
        VirtualCamera(
            camera_factory=functools.partial(_pyvirtualcam_camera, backend="mirage-missing")
        ).open()
    err = io.StringIO()
    options = DesktopOptions(
        loopback("http://127.0.0.1:9"),
        input=str(clip),
        virtual_camera=True,
        camera_factory=functools.partial(_pyvirtualcam_camera, backend="mirage-missing"),
    )
    assert await run_client(options, err) == EXIT_DEVICE
    assert "no virtual camera" in err.getvalue() and "v4l2loopback" in err.getvalue()
    err = io.StringIO()
    options = DesktopOptions(loopback("http://127.0.0.1:9"), record="/no/such/dir/out.mp4")
    assert await run_client(options, err) == EXIT_DEVICE
    assert "cannot write '/no/such/dir/out.mp4'" in err.getvalue()
    err = io.StringIO()
    options = DesktopOptions(loopback("http://127.0.0.1:9"), input="/no/such/clip.mp4")
    assert await run_client(options, err) == EXIT_DEVICE
    assert "cannot open input '/no/such/clip.mp4'" in err.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_client_retries_until_the_server_is_up_and_after_it_ends_the_session(
    aiohttp_server: Any, clip: Path, tmp_path: Path
) -> None:
    from mirage.app import create_app
    from tests.server_fixtures import LOOPBACK

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    err = io.StringIO()
    stop = asyncio.Event()
    out = tmp_path / "reconnected.mp4"
    options = DesktopOptions(
        loopback(url),
        input=str(clip),
        loop=True,
        record=str(out),
        backoff=Backoff(0.2, 1.5, 1.0),
    )
    client = asyncio.create_task(run_client(options, err, stop))
    try:
        await until(lambda: err.getvalue().count("cannot reach") >= 2, 10.0)
        assert err.getvalue().count("cannot reach") >= 2, err.getvalue()
        server = await aiohttp_server(create_app(LOOPBACK), host="127.0.0.1", port=port)
        sessions = server.app[SERVER].sessions

        def flowing() -> bool:  # the live session has sent avatar frames back
            return any(s.video and s.video.frames_out >= 20 for s in sessions.values())

        await until(flowing, 20.0)
        assert flowing(), err.getvalue()
        [first] = list(sessions)
        async with aiohttp.ClientSession() as http:
            await http.delete(f"{url}/sessions/{first}")
        await until(lambda: first not in sessions and flowing(), 20.0)
        assert err.getvalue().count("connected: session") == 2, err.getvalue()
        assert "connection closed; reconnecting in" in err.getvalue()
        assert len(sessions) == 1 and first not in sessions and flowing()
    finally:
        stop.set()
        status = await asyncio.wait_for(client, 15.0)
    assert status == EXIT_OK
    await until(lambda: not server.app[SERVER].sessions, 3.0)
    assert not server.app[SERVER].sessions
    # The recording spans both connections with audio and video in step.
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        video_end = float((video.start_time or 0) * video.time_base)
        video_end += float(video.duration * video.time_base)
    with av.open(str(out)) as container:
        audio_s = sum(f.samples for f in container.decode(audio=0)) / 48000
    assert frames >= 10 and abs(audio_s - video_end) < 0.3, (frames, audio_s, video_end)


async def test_refusals_for_good_end_the_client_with_the_reason(
    start_server: StartServer, aiohttp_server: Any, clip: Path
) -> None:
    server = await start_server()
    err = io.StringIO()
    options = DesktopOptions(loopback(base_url(server), face="nope"), input=str(clip))
    assert await run_client(options, err) == EXIT_REFUSED
    assert "unknown face backend 'nope'" in err.getvalue() and "HTTP 400" in err.getvalue()
    assert "reconnecting" not in err.getvalue()

    err = io.StringIO()  # a portrait that is not an image: refused, session deleted
    options = DesktopOptions(loopback(base_url(server), reference=str(clip)), input=str(clip))
    assert await run_client(options, err) == EXIT_REFUSED
    assert "portrait talking.mp4 refused" in err.getvalue(), err.getvalue()
    await until(lambda: not server.app[SERVER].sessions, 3.0)
    assert not server.app[SERVER].sessions

    # A bad token: the header is sent, 401 is final (a stand-in server that checks it).
    seen: list[str | None] = []

    async def offer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"error": "bad token", "kind": "Unauthorized"}, status=401)

    app = web.Application()
    app.router.add_post("/offer", offer)
    gate = await aiohttp_server(app, host="127.0.0.1")
    err = io.StringIO()
    options = DesktopOptions(loopback(base_url(gate), token="t0ken"), input=str(clip))
    assert await run_client(options, err) == EXIT_REFUSED
    assert seen == ["Bearer t0ken"]
    assert "offer refused: bad token (HTTP 401)" in err.getvalue()


async def test_cli_stops_cleanly_on_ctrl_c(
    start_server: StartServer, tmp_path: Path, clip: Path
) -> None:
    server = await start_server(face="invert")
    out = tmp_path / "ctrl-c.mp4"
    command = [sys.executable, "-m", "mirage", "client", "--server", base_url(server)]
    command += ["--input", str(clip), "--loop", "--record", str(out), "--ice-host", "127.0.0.1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(*command, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    sessions = server.app[SERVER].sessions
    try:
        await until(lambda: sessions and next(iter(sessions.values())).video, 30.0)
        assert sessions, "the CLI never connected"
        await asyncio.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 20.0)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()
    assert "stopped after 1 connection(s)" in stderr.decode()
    assert not sessions, "Ctrl-C left the session open on the server"
    with av.open(str(out)) as container:  # a finished, readable mp4
        assert sum(1 for _ in container.decode(video=0)) >= 10


# -- the relay API -----------------------------------------------------------------------
async def read_frames(track: Any, count: int, timeout: float) -> list[Any]:
    frames: list[Any] = []

    async def read() -> None:
        while len(frames) < count:
            frames.append(await track.recv())

    await asyncio.wait_for(read(), timeout)
    return frames


def assert_inverted_ids(frames: list[Any]) -> None:
    ids = []
    for frame in frames:
        image = frame.to_ndarray(format="rgb24")
        frame_id = read_id(image)
        if frame_id is not None:
            ids.append(frame_id)
            sent = draw_id(frame_id, 512).astype(np.int16)
            back = fit_square(image, 512).astype(np.int16)
            assert np.abs(back - (255 - sent)).mean() < 15
    assert len(ids) >= len(frames) // 2, f"only {len(ids)} of {len(frames)} frames readable"
    assert ids == sorted(ids)


async def test_mirage_relay_transforms_a_bots_tracks_through_the_server(
    start_server: StartServer,
) -> None:
    server = await start_server()
    camera, mic = SyntheticCamera(512, 20.0), BeepMicrophone()
    async with MirageRelay(
        base_url(server), face="invert", voice="passthrough", ice_hosts=("127.0.0.1",)
    ) as relay:
        video, audio = await relay.transform(camera, mic)
        assert video is not None and audio is not None
        frames, sound = await asyncio.gather(
            read_frames(video, 15, 20.0), read_frames(audio, 25, 20.0)
        )
        assert_inverted_ids(frames)
        assert all(f.sample_rate == 48000 for f in sound)
        assert len(server.app[SERVER].sessions) == 1
    await until(lambda: not server.app[SERVER].sessions, 3.0)
    assert not server.app[SERVER].sessions
    camera.stop()
    mic.stop()


async def test_local_relay_transforms_a_bots_tracks_without_a_server() -> None:
    camera, mic = SyntheticCamera(512, 20.0), BeepMicrophone()
    async with LocalRelay(face="invert", voice="passthrough", settings=LOOPBACK) as relay:
        video, audio = await relay.transform(camera, mic)
        assert video is not None and audio is not None
        frames, sound = await asyncio.gather(
            read_frames(video, 15, 20.0), read_frames(audio, 40, 20.0)
        )
        assert_inverted_ids(frames)
        pcm = np.concatenate([f.to_ndarray().ravel() for f in sound]).astype(np.float32)
        assert np.abs(pcm).max() > 0.1 * 32767, "the beeps did not come through"
    assert video.readyState == "ended" and audio.readyState == "ended"
    camera.stop()
    mic.stop()


async def test_relay_bot_example_records_a_relayed_file(tmp_path: Path, clip: Path) -> None:
    spec = importlib.util.spec_from_file_location("relay_bot", ROOT / "examples" / "relay_bot.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "bot.mp4"
    args = ["--local", "--face", "invert", "--voice", "passthrough", "--input", str(clip)]
    args += ["--output", str(out), "--seconds", "2"]
    assert await example.relay_file(example.parse_args(args)) == 0
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(out)) as container:
        pcm = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert len(frames) >= 15 and len(pcm) > 48000, (len(frames), len(pcm))
    assert float(np.sqrt(np.mean(pcm**2))) > 0.005, "the relayed voice is silent"
    inverted, plain = inversion_errors(frames[-1], clip)
    assert inverted < 20 and plain > inverted + 40, (inverted, plain)


async def test_client_takes_the_servers_ice_servers_with_turn_credentials(
    start_server: StartServer,
) -> None:
    """The desktop client, like the page, uses the STUN/TURN list the server hands out
    (time-limited TURN credentials, behind auth), added to its own ``--ice-server``s."""
    from mirage.client.connect import fetch_ice_servers

    server = await start_server(
        token="s3cret", turn_urls=("turn:127.0.0.1:3478",), turn_secret="coturn-key"
    )
    url = base_url(server)
    async with aiohttp.ClientSession() as http:
        got = await fetch_ice_servers(
            http, loopback(url, token="s3cret", ice_servers=("stun:127.0.0.1:3478",))
        )
        assert [s.urls for s in got] == ["stun:127.0.0.1:3478", ["turn:127.0.0.1:3478"]]
        # coturn's REST scheme, recomputed with the server's secret: the password is
        # base64(HMAC-SHA1(secret, username)) and the username "<expiry>:<label>".
        username = got[1].username or ""
        expiry, _, label = username.partition(":")
        assert time.time() + 3600 - 60 <= int(expiry) <= time.time() + 3600 and label
        digest = hmac.new(b"coturn-key", username.encode(), hashlib.sha1).digest()
        assert got[1].credential == base64.b64encode(digest).decode()
        # Refused (no token) or unreachable: the command line's list alone.
        refused = await fetch_ice_servers(http, loopback(url, ice_servers=("stun:x:1",)))
        assert [s.urls for s in refused] == ["stun:x:1"]
        gone = await fetch_ice_servers(http, loopback("http://127.0.0.1:9", ice_servers=()))
        assert gone == []


async def test_probe_makes_its_connection_as_the_client_does(aiohttp_server: Any) -> None:
    """The measuring probe shares the client's exchange (mirage/client/connect.py): it
    asks for the server's ICE list with its token, skips entries it cannot use, and a
    refusal is a ``Refused`` with the server's reason, not a bare error."""
    from mirage.client.connect import Refused, fetch_ice_servers
    from mirage.client.probe import Probe
    from mirage.ice import rtc_ice_servers

    seen: list[tuple[str, str | None]] = []
    junk = [{"urls": []}, "stun:bare-string", {"username": "u"}, None]

    async def ice(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("Authorization")))
        return web.json_response({"iceServers": junk})

    async def offer(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("Authorization")))
        return web.json_response({"error": "bad token"}, status=401)

    app = web.Application()
    app.router.add_get("/ice-servers", ice)
    app.router.add_post("/offer", offer)
    gate = await aiohttp_server(app, host="127.0.0.1")
    probe = Probe(base_url(gate), size=128, token="t0ken")
    try:
        with pytest.raises(Refused, match=r"offer refused: bad token \(HTTP 401\)") as err:
            await probe.connect()
        assert err.value.permanent
    finally:
        await probe.close()
    assert seen == [("/ice-servers", "Bearer t0ken"), ("/offer", "Bearer t0ken")]
    async with aiohttp.ClientSession() as http:
        assert await fetch_ice_servers(http, loopback(base_url(gate))) == []
    (entry,) = rtc_ice_servers([*junk, {"urls": "turn:h:3478", "username": "u", "credential": "c"}])
    assert (entry.urls, entry.username, entry.credential) == ("turn:h:3478", "u", "c")


def test_a_sink_writes_its_buffer_on_close_and_stops_at_a_failed_write() -> None:
    """``ThreadSink`` on the engine's ``Worker``: a bounded buffer (oldest dropped),
    what is buffered is written before the device is released, in the writer thread,
    once; a write that raises ends the sink with the reason."""
    import threading

    from mirage.client.sinks import ThreadSink

    class Device(ThreadSink):
        name = "test-device"

        def __init__(self, fail_at: int | None = None) -> None:
            super().__init__(capacity=3)
            self.fail_at = fail_at
            self.got: list[int] = []
            self.released_in: list[str] = []

        def _write(self, frame: Any) -> None:
            time.sleep(0.03)  # a slow device: close() comes while frames still wait
            if frame.pts == self.fail_at:
                raise OSError("unplugged")
            self.got.append(frame.pts)

        def _finish(self) -> None:
            self.released_in.append(threading.current_thread().name)

    def frame(pts: int) -> VideoFrame:
        out = VideoFrame(16, 16, "rgb24")
        out.pts = pts
        return out

    sink = Device()
    for pts in range(6):  # before the writer starts: only the newest 3 stay
        sink.put(frame(pts))
    sink.start()
    sink.close()
    assert sink.got == [3, 4, 5] and sink.dropped == 3 and sink.written == 3
    assert sink.released_in == ["mirage-test-device"] and sink.error is None
    sink.put(frame(6))  # closed: ignored
    assert sink.got == [3, 4, 5]

    broken = Device(fail_at=1)
    broken.start()
    for pts in range(3):
        broken.put(frame(pts))
        time.sleep(0.05)
    started = time.monotonic()
    broken.close()
    assert time.monotonic() - started < 1.0
    assert broken.got == [0] and str(broken.error) == "unplugged"
    assert broken.released_in == ["mirage-test-device"]

    never = Device()  # closed without starting: released all the same
    never.close()
    assert never.released_in == [threading.current_thread().name]
