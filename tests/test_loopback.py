"""Real peers over loopback: an aiortc client ↔ the Mirage app, real codecs."""

from __future__ import annotations

import asyncio

import numpy as np

from mirage.client.probe import Probe, draw_id
from mirage.state import SERVER
from tests.server_fixtures import StartServer, base_url, start_server  # noqa: F401


async def run_probe(probe: Probe, seconds: float) -> None:
    await probe.connect()
    await asyncio.sleep(seconds)


async def test_inverting_backend_returns_inverted_frames_in_order(start_server: StartServer) -> None:
    server = await start_server()
    probe = Probe(base_url(server), options={"face": "invert"}, keep_images=True)
    try:
        await run_probe(probe, 4.0)
        got = probe.received
        assert len(got.video_ids) >= 30, f"only {len(got.video_ids)} frames came back"
        assert got.video_ids == sorted(got.video_ids), "frames came back out of order"
        assert got.audio_frames > 100 and max(got.audio_rms) > 0.1, "no audio came back"
        # The returned frame is the inverse of what was sent (within codec error).
        last = got.video_ids[-1]
        sent = draw_id(last, 512).astype(np.int16)
        back = got.last_image.astype(np.int16)
        err_inverted = np.abs(back - (255 - sent)).mean()
        err_plain = np.abs(back - sent).mean()
        assert err_inverted < 12, f"mean error vs inverted input {err_inverted:.1f}"
        assert err_plain > 100
        stats = server.app[SERVER].sessions[probe.session_id].stats()
        assert stats["video"]["frames_out"] > 0 and stats["audio"]["frames_out"] > 0
    finally:
        await probe.close()
