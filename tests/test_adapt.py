"""Adaptive quality: the controller alone (synthetic time), then a real session."""

from __future__ import annotations

import asyncio

import pytest

from mirage.client.probe import Probe
from mirage.engine.adapt import LEVELS, QualityController, find_level
from mirage.state import SERVER
from tests.server_fixtures import StartServer, base_url


def feed(ctl: QualityController, seconds: float, cost_at_512: float, start: float) -> float:
    """Frames at the level's rate whose time scales with the level's pixels."""
    t = start
    while t < start + seconds:
        level = ctl.level
        cost = cost_at_512 * (level.size / 512) ** 2 * (0.75 if level.quality == "fast" else 1)
        ctl.record(cost, t)
        t += level.budget_s
    return t


def test_overload_steps_down_in_order_then_recovers_without_oscillating() -> None:
    ctl = QualityController()
    t = feed(ctl, 2.5, cost_at_512=0.1, start=0.0)  # 2× the 50 ms budget
    assert ctl.index == 1, "one step down within ~2 s"
    t = feed(ctl, 12.0, cost_at_512=0.1, start=t)
    assert ctl.level.name == "384@18-fast", "2× overload settles where frames fit the budget"
    t = feed(ctl, 12.0, cost_at_512=0.2, start=t)
    # quality first, then fps, then resolution
    assert [m.level.name for m in ctl.moves] == [lv.name for lv in LEVELS[1:5]]
    assert ctl.level.size == 256
    t = feed(ctl, 4.0, cost_at_512=0.01, start=t)  # load gone: not before ~5 s
    assert ctl.level.size == 256
    t = feed(ctl, 40.0, cost_at_512=0.01, start=t)
    assert ctl.index == 0, "recovers to full quality"
    ups = [m for m in ctl.moves if m.direction == "up"]
    assert len(ups) == 4
    # Steady moderate load (fits level 1 but not level 0) never flaps.
    ctl2 = QualityController()
    t = feed(ctl2, 60.0, cost_at_512=0.05, start=0.0)
    assert len(ctl2.moves) <= 3, [m.level.name for m in ctl2.moves]


def test_pinned_level_never_moves_and_names_are_checked() -> None:
    ctl = QualityController(pinned=find_level("384@18-fast"))
    feed(ctl, 10.0, cost_at_512=1.0, start=0.0)
    assert ctl.level.name == "384@18-fast" and not ctl.moves
    assert find_level(0) == 0 and find_level("2") == 2
    with pytest.raises(ValueError, match="auto"):
        find_level("8k")


async def test_slow_session_steps_down_then_recovers(start_server: StartServer) -> None:
    server = await start_server()
    probe = Probe(
        base_url(server), audio=False, options={"face": "slow", "face_options": {"delay_ms": 100}}
    )
    try:
        await probe.connect()
        session = server.app[SERVER].sessions[probe.session_id]
        for _ in range(150):
            await asyncio.sleep(0.1)
            if session.video is not None and session.video.controller.index > 0:
                break
        assert session.video is not None and session.video.controller.index > 0, "no step down"
        session.backends.animator.guard.model.delay_s = 0.002  # type: ignore[attr-defined]
        for _ in range(600):
            await asyncio.sleep(0.1)
            if session.video.controller.index == 0:
                break
        assert session.video.controller.index == 0, session.stats()["quality"]
        stats = session.stats()
        assert stats["quality"]["moves"][-1]["direction"] == "up"
        registry = server.app[SERVER].metrics.registry
        for direction in ("down", "up"):
            moves = registry.get_sample_value(
                "mirage_quality_moves_total", {"direction": direction}
            )
            assert moves is not None and moves >= 1, (direction, moves)
    finally:
        await probe.close()


async def test_quality_pinned_and_changed_live(start_server: StartServer) -> None:
    import aiohttp

    server = await start_server()
    probe = Probe(
        base_url(server), audio=False, options={"quality": "256@15-fast"}, keep_images=True
    )
    try:
        await probe.connect()
        for _ in range(100):
            await asyncio.sleep(0.1)
            if probe.received.first_image is not None:
                break
        assert probe.received.first_image is not None
        assert probe.received.first_image.shape[:2] == (256, 256)
        async with aiohttp.ClientSession() as http:
            url = f"{base_url(server)}/sessions/{probe.session_id}"
            async with http.patch(url, json={"quality": "384@18-fast"}) as resp:
                assert resp.status == 200
                assert (await resp.json())["quality"]["level"] == "384@18-fast"
            # Live: the frames that come back change size without a new connection.
            for _ in range(100):
                await asyncio.sleep(0.1)
                last = probe.received.last_image
                if last is not None and last.shape[:2] == (384, 384):
                    break
            last = probe.received.last_image
            assert last is not None and last.shape[:2] == (384, 384), (
                None if last is None else last.shape
            )
            async with http.patch(url, json={"quality": "huge"}) as resp:
                assert (
                    resp.status == 400 and "unknown quality level" in (await resp.json())["error"]
                )
            async with http.patch(url, json={"voice_options": {"semitones": 3}}) as resp:
                assert resp.status == 400 and "no live settings" in (await resp.json())["error"]
    finally:
        await probe.close()
