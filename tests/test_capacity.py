"""Admission: the default limit from the device, 503 past it (bursts too), /health load."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import aiohttp

from mirage.capacity import Device, sessions_for
from mirage.client.connect import Refused
from mirage.client.probe import Probe
from mirage.config import Settings
from mirage.state import SERVER
from tests.server_fixtures import StartServer, base_url


def test_default_limit_follows_the_device() -> None:
    assert sessions_for(Device(cpu_cores=2, gpu_memory_gib=None)) == 2  # this machine
    assert sessions_for(Device(cpu_cores=2.5, gpu_memory_gib=None)) == 2  # a cgroup quota
    assert sessions_for(Device(cpu_cores=32, gpu_memory_gib=80)) == 20  # GPU memory bounds
    assert sessions_for(Device(cpu_cores=4, gpu_memory_gib=80)) == 4  # CPU bounds
    assert sessions_for(Device(cpu_cores=1, gpu_memory_gib=2)) == 1  # never 0
    # This machine's default, from its cores counted here apart (affinity, cgroup quota)
    # and from whether it has an NVIDIA driver at all.
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, int(int(quota) / int(period)))
    if not Path("/proc/driver/nvidia").exists():
        assert Settings().max_sessions == max(1, cores)
    else:
        assert 1 <= Settings().max_sessions <= max(1, cores)


async def test_a_burst_of_offers_cannot_pass_the_limit(start_server: StartServer) -> None:
    """Offers still being answered count: two at once against a limit of 1 → one 503."""
    server = await start_server(max_sessions=1)
    url = base_url(server)
    probes = [Probe(url, video=False), Probe(url, video=False)]
    try:
        results = await asyncio.gather(*(p.connect() for p in probes), return_exceptions=True)
        refused = [r for r in results if isinstance(r, Exception)]
        assert len(refused) == 1, results
        assert isinstance(refused[0], Refused) and refused[0].status == 503, refused
        assert "at capacity (1 sessions)" in str(refused[0]) and not refused[0].permanent
        assert len(server.app[SERVER].sessions) == 1
        async with aiohttp.ClientSession() as http, http.get(f"{url}/health") as resp:
            health = await resp.json()
        assert resp.status == 200 and health["load"] == 1.0 and health["sessions"] == 1
    finally:
        await asyncio.gather(*(p.close() for p in probes), return_exceptions=True)
