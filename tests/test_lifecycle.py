"""One backend lifecycle (mirage/engine/backends.py) for every caller: the relay for
bots and the offline renderer get the same guard as a server session, so a model
that hangs falls back and is remade there too (tests/test_faults.py has the session).
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from mirage.client.probe import BeepMicrophone, SyntheticCamera, draw_id
from mirage.client.relay import LocalRelay
from mirage.engine.backends import GuardPolicy, face_check, probe_voice_timing
from mirage.images import ImageLimits, decode_image
from mirage.models import registry
from mirage.models.avatar.passthrough import PassthroughAnimator
from mirage.models.base import BackendUnavailable, WeightsMissing
from mirage.models.registry import BuildContext
from mirage.models.voice.passthrough import PassthroughConverter
from mirage.offline.render import RenderJob, render
from tests.conftest import MEDIA
from tests.server_fixtures import LOOPBACK
from tests.test_faults import Seen, is_red
from tests.test_loopback import metric, mirage_threads

HANG_S = 2.0


async def test_local_relay_falls_back_and_remakes_a_hung_model_as_a_session_does() -> None:
    settings = LOOPBACK.replace(model_timeout_s=0.3, model_restart_after=2)
    camera, mic = SyntheticCamera(512, 20.0), BeepMicrophone()
    relay = LocalRelay(
        face="hang",
        voice="hang",
        face_options={"after": 10, "hang_s": HANG_S},
        voice_options={"after": 40, "hang_s": HANG_S},
        settings=settings,
    )
    seen = Seen()
    loudest = 0.0

    async def listen(track: Any) -> None:
        nonlocal loudest
        while True:
            frame = await track.recv()
            loudest = max(loudest, float(np.abs(frame.to_ndarray()).max()) / 32768)

    async with relay:
        video, audio = await relay.transform(camera, mic)
        assert video is not None and audio is not None
        listener = asyncio.create_task(listen(audio))
        start = time.monotonic()
        # Until the face came back from its restart: inverted, camera (fallback), inverted.
        while time.monotonic() - start < 20.0 and not seen.fell_back_and_recovered():
            seen.add((await asyncio.wait_for(video.recv(), 5.0)).to_ndarray(format="rgb24"))
        listener.cancel()
        counters = relay.metrics.render().decode()
    assert seen.red == 0, "a frame from an abandoned model call was sent"
    assert "other" not in seen.kinds, seen.kinds
    assert "inverted camera" in seen.text, "no camera fallback during the hang"
    assert "camera inverted" in seen.text, "the face never came back from its restart"
    for track in ("video", "audio"):
        assert metric(counters, "mirage_model_timeouts_total", backend="hang", track=track) >= 1
    assert metric(counters, "mirage_backend_restarts_total", backend="hang", track="video") >= 1
    assert loudest < 0.9, "the hung converter's noise was sent"
    camera.stop()
    mic.stop()
    deadline = time.monotonic() + HANG_S + 3  # abandoned calls end, closing their models
    while mirage_threads() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert mirage_threads() == []


def _driving_clip(path: Path, frames: int = 40, fps: int = 10) -> Path:
    """Numbered frames (``draw_id``) with a tone under them."""
    rate = 16000
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width = video.height = 128
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "10", "preset": "ultrafast"}
        sound = out.add_stream("aac", rate=rate, layout="mono")
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(draw_id(i, 128), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(rate * frames // fps) / rate
        tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(
                tone[None, start : start + 1024].copy(), format="fltp", layout="mono"
            )
            chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, Fraction(1, rate)
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


def test_render_falls_back_on_a_hung_model_and_drops_nothing(tmp_path: Path) -> None:
    driving = _driving_clip(tmp_path / "driving.mp4")
    job = RenderJob(
        MEDIA / "s0.jpg",
        driving,
        tmp_path / "out.mp4",
        face="hang",
        face_options={"after": 5, "hang_s": HANG_S},
        voice="hang",
        voice_options={"after": 10, "hang_s": HANG_S},
        size=128,
        test_backends=True,
        guard=GuardPolicy(timeout_s=0.3, restart_after=2),
    )
    result = render(job)
    assert result.frames == 40, "a render drops nothing, fallback frames included"
    assert result.face_errors >= 1 and result.voice_errors >= 1, result
    with av.open(str(job.out)) as container:
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    kinds = []
    for i, img in enumerate(images):
        assert not is_red(img), f"frame {i} came from an abandoned model call"
        sent = draw_id(i, 128).astype(np.int16)
        inverted = np.abs(img.astype(np.int16) - (255 - sent)).mean()
        plain = np.abs(img.astype(np.int16) - sent).mean()
        kinds.append("inverted" if inverted < plain else "camera")
    text = " ".join(kinds)
    assert "inverted camera" in text and "camera inverted" in text, text
    deadline = time.monotonic() + HANG_S + 3
    while mirage_threads() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mirage_threads() == []


def test_resolve_gives_auto_its_reasons_and_each_caller_its_rule(tmp_path: Path) -> None:
    empty = str(tmp_path)
    auto = registry.resolve("voice", "auto", empty)
    assert auto.name in ("dsp", "passthrough") and auto.unavailable is None
    assert any(p.startswith("rvc: ") for p in auto.passed), auto.passed
    rvc = registry.resolve("voice", "rvc", empty)
    assert rvc.unavailable is not None and "missing weight file" in rvc.unavailable
    assert rvc.usable() == "passthrough"  # the server's defaults
    with pytest.raises(BackendUnavailable, match="voice backend 'rvc' cannot run here"):
        rvc.required()  # mirage render


def test_the_build_context_reaches_exactly_the_factories_that_declare_it(tmp_path: Path) -> None:
    """Declared in the registry entry (``weights``, ``clock``), never read off a signature."""
    calls: list[float] = []

    def clock() -> float:
        calls.append(0.0)
        return 0.0

    context = BuildContext(str(tmp_path), clock)
    # passthrough declares neither: given either, its constructor would refuse it
    registry.create_animator("passthrough", context).close()
    registry.create_converter("passthrough", context).close()
    with pytest.raises(WeightsMissing, match=str(tmp_path / "rvc" / "model.pth")):
        registry.create_converter("rvc", context)  # weights=True: the folder reached it
    warp = registry.create_animator("warp", context)  # clock=True
    try:
        portrait = decode_image((MEDIA / "s0.jpg").read_bytes(), ImageLimits())
        warp.set_reference(portrait)
        warp.animate(portrait, 64)
    finally:
        warp.close()
    assert calls, "warp timed its smoothing by its own clock, not the context's"


def test_the_portrait_check_and_the_voice_probe_close_what_they_make(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[str] = []
    monkeypatch.setattr(PassthroughAnimator, "close", lambda self: closed.append("face"))
    monkeypatch.setattr(PassthroughConverter, "close", lambda self: closed.append("voice"))
    face_check("passthrough", None, np.zeros((64, 64, 3), np.uint8))
    timing = probe_voice_timing("passthrough", BuildContext(), "bright")
    assert timing == {
        "sample_rate": 48000,
        "block_ms": 20.0,
        "latency_s": 0.0,
        "total_delay_ms": 20.0,
    }
    assert closed == ["face", "voice"]
