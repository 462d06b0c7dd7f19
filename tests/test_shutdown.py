"""Shutdown: stop admitting, close every session (telling its peer), exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

import aiohttp

from mirage.client.probe import Probe
from mirage.state import SERVER
from tests.server_fixtures import StartServer, base_url
from tests.test_loopback import until

OFFER = {"sdp": "v=0\r\n", "type": "offer"}


async def test_draining_server_refuses_offers_and_closes_its_sessions(
    start_server: StartServer,
) -> None:
    server = await start_server()
    state = server.app[SERVER]
    url = base_url(server)
    probe = Probe(url, video=False)
    try:
        await probe.connect()
        await until(lambda: probe.received.audio_frames > 5, 20.0)
        assert await state.shutdown(5.0)
        assert state.sessions == {}
        await until(lambda: probe.pc.connectionState == "closed", 5.0)
        assert probe.pc.connectionState == "closed", "the peer was not told"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/offer", json=OFFER) as resp:
                body = await resp.json()
                assert resp.status == 503 and resp.headers["Retry-After"] == "1"
                assert body == {
                    "error": "server shutting down; retry on another instance",
                    "kind": "ShuttingDown",
                }
            async with http.get(f"{url}/health") as resp:
                assert resp.status == 503
                assert (await resp.json())["status"] == "draining"
    finally:
        await probe.close(delete=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_closes_sessions_and_exits_0() -> None:
    """A real ``python server.py`` process with a live session from an in-process peer."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MIRAGE_SHUTDOWN_TIMEOUT_S": "5"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        "--port",
        str(port),
        "--face",
        "passthrough",
        "--voice",
        "passthrough",
        "--ice-host",
        "127.0.0.1",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    probe = Probe(url, size=128)
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                assert proc.returncode is None, "the server exited at start-up"
                try:
                    async with http.get(f"{url}/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the server never came up"
                await asyncio.sleep(0.2)
        await probe.connect()
        await until(lambda: probe.received.audio_frames > 5, 20.0)
        assert probe.received.audio_frames > 5
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        rc = await asyncio.wait_for(proc.wait(), 5 + 10)
        took = time.monotonic() - sent
        assert rc == 0, f"exit code {rc}"
        assert took < 5 + 3, f"took {took:.1f} s to exit"
        await until(lambda: probe.pc.connectionState == "closed", 5.0)
        assert probe.pc.connectionState == "closed", "the peer was not told"
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert "draining 1 sessions" in log and "sessions closed; exiting" in log, log[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await probe.close(delete=False)
