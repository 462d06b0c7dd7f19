"""How many concurrent passthrough sessions this machine holds at 20 fps.

A Mirage server runs in its own process (passthrough face and voice); probe peers
in this process each send 512×512 video at 20 fps with frame ids and a tone, and
time what comes back. Sessions are added one at a time; after each, every session
is measured over a window: new video frames per second and p95 video latency.
The ramp stops at the first count where a session falls below ``--min-fps`` or its
p95 goes over ``--max-p95-ms``: capacity is the count before. Then a second server
with ``--max-sessions`` = capacity is filled, and one more offer must get 503 with
Retry-After. Loopback only; the peers' own codecs share the machine with the server.

    python bench/load.py [--max 16] [--settle 4] [--window 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mirage.client.connect import Refused  # noqa: E402
from mirage.client.probe import Probe  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_server(max_sessions: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--ice-host"]
    cmd += ["127.0.0.1", "--face", "passthrough", "--voice", "passthrough"]
    cmd += ["--max-sessions", str(max_sessions), "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(f"{url}/health") as resp:
                    if resp.status == 200:
                        return proc, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not come up")


def measure(probe: Probe, since: float) -> tuple[float, float]:
    """(new frames per second, p95 latency in s) of ``probe``'s video since ``since``."""
    got = probe.received
    recent = [lat for t, lat in zip(got.video_times, got.video_latency, strict=False) if t >= since]
    span = time.monotonic() - since
    if not recent:
        return 0.0, float("inf")
    return len(recent) / span, float(np.percentile(recent, 95))


async def hold(probes: list[Probe], settle: float, window: float) -> list[tuple[float, float]]:
    await asyncio.sleep(settle)
    since = time.monotonic()
    await asyncio.sleep(window)
    return [measure(p, since) for p in probes]


async def ramp(args: argparse.Namespace) -> int:
    proc, url = await start_server(max_sessions=args.max + 1)
    probes: list[Probe] = []
    capacity = 0
    try:
        for n in range(1, args.max + 1):
            probe = Probe(url)
            await probe.connect()
            probes.append(probe)
            results = await hold(probes, args.settle, args.window)
            worst_fps = min(fps for fps, _ in results)
            worst_p95 = max(p95 for _, p95 in results)
            ok = worst_fps >= args.min_fps and worst_p95 * 1000 <= args.max_p95_ms
            print(
                f"{n:3d} sessions: worst {worst_fps:5.1f} fps, worst p95 {worst_p95 * 1000:6.0f} ms"
                f"  {'ok' if ok else 'over'}",
                flush=True,
            )
            if not ok:
                break
            capacity = n
    finally:
        await asyncio.gather(*(p.close() for p in probes), return_exceptions=True)
        proc.terminate()
        proc.wait(15)
    return capacity


async def check_admission(capacity: int, args: argparse.Namespace) -> bool:
    """Fill a server limited to ``capacity``; the next offer must be refused with 503."""
    proc, url = await start_server(max_sessions=capacity)
    probes = [Probe(url) for _ in range(capacity)]
    extra = Probe(url)
    try:
        for probe in probes:
            await probe.connect()
        results = await hold(probes, args.settle, args.window)
        print("at the limit:", ", ".join(f"{fps:.1f} fps" for fps, _ in results))
        try:
            await extra.connect()
        except Refused as exc:
            refused = exc.status == 503
            print(f"one more: {exc}")
        else:
            refused = False
            print("one more: admitted (wrong)")
        async with aiohttp.ClientSession() as http, http.get(f"{url}/health") as resp:
            print("health:", await resp.json())
        return refused
    finally:
        await asyncio.gather(*(p.close() for p in [*probes, extra]), return_exceptions=True)
        proc.terminate()
        proc.wait(15)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=16, help="stop the ramp here")
    parser.add_argument("--settle", type=float, default=4.0, help="s after each new session")
    parser.add_argument("--window", type=float, default=4.0, help="s measured per step")
    parser.add_argument("--min-fps", type=float, default=19.0)
    parser.add_argument("--max-p95-ms", type=float, default=250.0)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{platform.processor() or platform.machine()}, {cores} cores, load {os.getloadavg()}")
    capacity = await ramp(args)
    print(f"capacity: {capacity} concurrent passthrough sessions at ≥{args.min_fps:g} fps")
    if capacity < 1:
        return 1
    refused = await check_admission(capacity, args)
    print("admission:", "the next offer got 503" if refused else "NOT refused")
    return 0 if refused else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
