"""Closing a session never blocks the event loop (its worker threads are joined off it),
and the rules that end a session or a WHEP viewer (``PeerLifetime``)."""

from __future__ import annotations

import asyncio
import threading
import time

from pyee.asyncio import AsyncIOEventEmitter

from mirage.client.probe import Probe
from mirage.state import SERVER
from mirage.webrtc.lifetime import PeerLifetime
from tests.server_fixtures import StartServer, base_url
from tests.test_loopback import until

STEP_S = 1.0  # one worker step still running when the session closes


async def test_close_with_a_slow_worker_keeps_the_loop_responsive(
    start_server: StartServer,
) -> None:
    server = await start_server(face="slow")  # 100 ms a frame, behind its guard
    state = server.app[SERVER]
    probe = Probe(base_url(server), size=128, audio=False)
    try:
        await probe.connect()
        session = state.sessions[probe.session_id]

        def running() -> bool:
            return session.video is not None and session.video.frames_out > 3

        await until(running, 20.0)
        video = session.video
        assert video is not None and running()
        # A step the model guard cannot cut short (e.g. a slow frame conversion): the
        # worker is still inside it when close begins.
        inside = threading.Event()
        worker = video._worker
        step = worker._step

        def slow_step() -> None:
            inside.set()
            time.sleep(STEP_S)
            step()

        worker._step = slow_step
        assert await asyncio.to_thread(inside.wait, 5.0)

        gaps: list[float] = []
        ticking = True

        async def tick() -> None:
            last = time.monotonic()
            while ticking:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await session.close("test")
        took = time.monotonic() - started
        ticking = False
        await ticker
        assert not video.worker_alive, "close returned before the worker thread ended"
        assert took >= 0.5 * STEP_S, f"close took {took:.2f} s: it did not wait for the worker"
        assert max(gaps) < 0.3, f"the event loop stalled {max(gaps):.2f} s during close"
        assert probe.session_id not in state.sessions
    finally:
        await probe.close(delete=False)


class StatePeer(AsyncIOEventEmitter):
    """Only what PeerLifetime reads of an RTCPeerConnection: its state and the event."""

    def __init__(self) -> None:
        super().__init__()
        self.connectionState = "new"

    def move(self, state: str) -> None:
        self.connectionState = state
        self.emit("connectionstatechange")


async def test_peer_lifetime_closes_once_on_each_ending_rule() -> None:
    """The rules a Session and a WHEP viewer share: failed/closed at once, disconnected
    only past the grace (a recovery keeps it), never connected past its timeout."""
    closed: list[tuple[str, str]] = []

    def owner(name: str, connect_timeout_s: float | None = None) -> StatePeer:
        pc = StatePeer()

        async def close(reason: str) -> None:
            if life.begin_close(reason):
                closed.append((name, reason))

        life = PeerLifetime(pc, lambda: name, 0.2, close)  # type: ignore[arg-type]
        life.watch(connect_timeout_s)
        return pc

    failing, recovering, vanishing = owner("failing"), owner("recovering"), owner("vanishing")
    owner("never", connect_timeout_s=0.3)
    for pc in (failing, recovering, vanishing):
        pc.move("connected")
    failing.move("failed")
    failing.move("closed")  # a second ending changes nothing
    recovering.move("disconnected")
    vanishing.move("disconnected")
    await asyncio.sleep(0.05)
    recovering.move("connected")
    await asyncio.sleep(0.5)
    assert sorted(closed) == [
        ("failing", "connection failed"),
        ("never", "never connected"),
        ("vanishing", "disconnected past grace"),
    ]
