"""Session churn: 200 connect/disconnect cycles against one server leave nothing behind.

Peers leave three ways: DELETE then close, close without DELETE (DTLS close /
RTCP BYE tell the server), and vanish (their sockets shut with no word, like a
killed tab; the server's media watchdog must notice). Afterwards: no sessions,
no session objects alive, asyncio tasks, threads and file descriptors back to the
baseline, and bounded RSS growth.

Not collected by the suite (its name does not start with ``test_``):
``tests/test_churn.py`` runs it in an interpreter of its own, so the RSS it measures is
a server's, not that of a process that has already run the rest of the suite.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import itertools
import logging
import os
import threading
import time

import psutil
import pytest
from aiortc import RTCPeerConnection

from mirage.client.probe import Probe
from mirage.engine.guard import ModelGuard
from mirage.state import SERVER
from mirage.tracks.base import TransformTrack
from mirage.webrtc.session import Session
from tests.server_fixtures import StartServer, base_url

CYCLES = 200
AT_ONCE = 4  # peers connecting and leaving at the same time
VIDEO_EVERY = 8  # one cycle in 8 also sends (and gets back) video
ROUND = 50  # cycles between RSS readings


async def vanish(probe: Probe) -> None:
    """Shut the peer's ICE sockets without a word (no DTLS close, no BYE), then let its
    objects go as a killed browser tab would. Test-only use of aiortc/aioice internals."""
    for transceiver in probe.pc.getTransceivers():
        ice = transceiver.sender.transport.transport
        for protocol in list(ice._connection._protocols):
            if protocol.transport is not None:
                protocol.transport.close()
    for task in probe._tasks:
        task.cancel()
    await probe.pc.close()  # its goodbyes go into closed sockets


async def cycle(url: str, index: int) -> None:
    video = index % VIDEO_EVERY == 0
    probe = Probe(url, video=video, size=128)
    got = probe.received
    try:
        await probe.connect()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            # Any frame back (a 128² camera is too small to carry the probe's frame ids).
            video_back = len(got.video_ids) + got.unreadable
            if got.audio_frames > 0 and (not video or video_back):
                break
            await asyncio.sleep(0.02)
        assert got.audio_frames > 0, f"cycle {index}: no audio came back"
        assert not video or len(got.video_ids) + got.unreadable, f"cycle {index}: no video"
    finally:
        how = index % 3
        if how == 0:
            await probe.close(delete=True)
        elif how == 1:
            await probe.close(delete=False)
        else:
            await vanish(probe)


def live_objects() -> dict[str, int]:
    gc.collect()
    kinds = {
        "Session": Session,
        "RTCPeerConnection": RTCPeerConnection,
        "TransformTrack": TransformTrack,
        "ModelGuard": ModelGuard,
    }
    counts = dict.fromkeys(kinds, 0)
    for obj in gc.get_objects():
        for name, kind in kinds.items():
            if isinstance(obj, kind):
                counts[name] += 1
    return counts


def referrers() -> str:
    """What holds the first live Session (for the failure message)."""
    gc.collect()
    held = next((o for o in gc.get_objects() if isinstance(o, Session)), None)
    if held is None:
        return ""
    lines = []
    for ref in gc.get_referrers(held):
        if isinstance(ref, dict):
            lines.append(f"dict with keys {list(ref)[:6]}")
        else:
            lines.append(f"{type(ref).__name__} {getattr(ref, '__qualname__', '')}")
            for ref2 in gc.get_referrers(ref):
                lines.append(f"    <- {type(ref2).__name__} {getattr(ref2, '__qualname__', '')}")
    return "\n".join(lines)


def resident_bytes(proc: psutil.Process) -> int:
    """RSS after handing glibc's free arena pages back: what is still *used*, so the
    allocator's high-water marks (which vary run to run) do not read as a leak."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None)
        if trim is not None:
            trim(0)
    return int(proc.memory_info().rss)


def threads() -> tuple[list[str], int]:
    """Threads that must match the baseline exactly, and the default executor's count
    (it starts threads lazily, up to its max_workers, and keeps them)."""
    names = sorted(t.name for t in threading.enumerate())
    pool = [n for n in names if n.startswith("asyncio_")]
    return [n for n in names if not n.startswith("asyncio_")], len(pool)


async def every_worker_free(timeout: float = 10.0) -> None:
    """All of the loop's default-executor workers (``ThreadPoolExecutor``'s default
    ``max_workers``) run a job at the same time: none is held by anything else."""
    size = min(32, (os.cpu_count() or 1) + 4)
    barrier = threading.Barrier(size, timeout=timeout)
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(None, barrier.wait) for _ in range(size)))


async def settle(done: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_churn_leaves_no_sessions_tasks_threads_or_fds(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    # pytest keeps every log record of a test, and a record of a model error holds the
    # exception, its traceback and so the frames and the session it failed in: warnings
    # (each peer that leaves mid-frame logs one) would keep sessions alive here only.
    # Same for the vanished peers' own senders, which log each send into their closed
    # sockets with a traceback (asyncio, aiortc loggers): only the test would keep them.
    caplog.set_level(logging.CRITICAL)
    caplog.set_level(logging.ERROR, logger="mirage")
    server = await start_server(media_timeout_s=1.0, disconnected_grace_s=0.5, max_sessions=64)
    state = server.app[SERVER]
    url = base_url(server)
    proc = psutil.Process()

    async def run(indices: range) -> None:
        for start in range(indices.start, indices.stop, AT_ONCE):
            batch = range(start, min(start + AT_ONCE, indices.stop))
            await asyncio.gather(*(cycle(url, i) for i in batch))

    async def quiet() -> None:
        """Every session gone (vanished peers take media_timeout_s) and its threads too."""
        await settle(lambda: not state.sessions, 10.0)
        await settle(lambda: not [t for t in threads()[0] if t.startswith("mirage-")], 5.0)
        await asyncio.sleep(0.5)  # aiortc's last timers and the closing sockets

    # Warm-up: lazy imports, codec set-up, the executor's threads, allocator arenas.
    await run(range(0, 2 * AT_ONCE * 3))
    await quiet()
    await every_worker_free()
    tasks0 = len(asyncio.all_tasks())
    threads0, _ = threads()
    fds0 = proc.num_fds()
    t0 = time.monotonic()
    rss = [resident_bytes(proc)]
    for start in range(0, CYCLES, ROUND):
        await run(range(start, start + ROUND))
        await quiet()
        rss.append(resident_bytes(proc))
    took = time.monotonic() - t0
    assert state.sessions == {}
    await settle(lambda: not any(live_objects().values()), 5.0)
    alive = live_objects()
    assert not any(alive.values()), f"session objects leaked: {alive}\n{referrers()}"
    assert len(asyncio.all_tasks()) <= tasks0, [t.get_coro() for t in asyncio.all_tasks()]
    names, _ = threads()
    assert names == threads0, "threads leaked"
    # The default executor never shrinks, so its thread count cannot show a leak: instead
    # every one of its workers must take a job at once, as before the churn (a call that a
    # session left blocked there would hold one worker for good).
    await every_worker_free()
    fds = proc.num_fds()
    # Exact but for 2: an aiohttp keep-alive or an asyncio self-pipe may be mid-close.
    assert fds <= fds0 + 2, f"fds {fds0} → {fds}"
    text = state.metrics.render().decode()
    assert "mirage_sessions_active 0.0" in text
    # RSS (after malloc_trim, see resident_bytes): the slope after the first round, which
    # still fills allocator arenas and codec pools. Measured here (MB per cycle over the
    # last 150 cycles): 0.06-0.11 with nothing leaked; 0.41 when every session is kept
    # alive (a test patch that held each closed Session; 0.41-0.43 again on 2026-12-03).
    # Untrimmed RSS read 0.06-0.32 for the same clean run, too noisy to bound; so did
    # this test inside the whole suite's process (0.28 clean in one CI run, cause not
    # pinned), hence a process of its own. The bound sits between, so a leaked session's
    # native memory (codec contexts, DTLS, buffers) fails it even when no Python object
    # is left.
    steps = [f"{(b - a) / 1e6:+.1f}" for a, b in itertools.pairwise(rss)]
    slope = (rss[-1] - rss[1]) / 1e6 / (CYCLES - ROUND)
    print(f"{CYCLES} cycles in {took:.1f} s; RSS per round {steps} MB; fds {fds0} → {fds}")
    assert slope < 0.25, f"RSS grows {slope:.2f} MB per cycle (rounds: {steps} MB)"
