"""Round-trip latency through Mirage (passthrough) vs a plain aiortc echo, same run.

Each server runs in its own process (so its CPU is measured alone); a probe client
in this process sends 512×512 @ 20 fps video with frame ids and a gated tone, and
times each frame's and each beep's return. Loopback only.

    python bench/loopback.py [--seconds 12] [--codecs VP8,H264]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mirage.client.probe import Probe  # noqa: E402

SERVERS = {
    "aiortc-echo": [sys.executable, str(ROOT / "bench" / "echo_server.py"), "--port", "{port}"],
    "mirage (sync off)": [
        sys.executable,
        "-m",
        "mirage",
        "serve",
        "--port",
        "{port}",
        "--ice-host",
        "127.0.0.1",
        "--face",
        "passthrough",
        "--voice",
        "passthrough",
        "--log-level",
        "WARNING",
    ],
}


SERVERS["mirage"] = SERVERS["mirage (sync off)"]
ENV = {"mirage (sync off)": {"MIRAGE_SYNC": "0"}}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(1200):  # up to 2 min: a loaded 2-core box imports torch slowly
            if proc.poll() is not None:
                raise RuntimeError("server exited during start-up")
            try:
                async with http.get(f"{url}/health"):
                    return  # any HTTP answer (the echo has no /health) means it is up
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


async def measure(
    server: str, codec: str, seconds: float, low_latency_client: bool, port: int
) -> dict[str, float]:
    cmd = [part.format(port=port) for part in SERVERS[server]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ENV.get(server, {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_up(url, proc)
        probe = Probe(url, video_codec=codec, low_latency_receive=low_latency_client)
        await probe.connect()
        await asyncio.sleep(2.0)  # warm-up: ICE, DTLS, first key frame
        got = probe.received
        skip_v, skip_a = len(got.video_latency), len(got.audio_latency)
        ps = psutil.Process(proc.pid)
        ps.cpu_percent(None)
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        cpu = ps.cpu_percent(None)
        elapsed = time.monotonic() - t0
        video = got.video_latency[skip_v:]
        audio = got.audio_latency[skip_a:]
        await probe.close()
        return {
            "video_p50": pct(video, 0.5) * 1000,
            "video_p95": pct(video, 0.95) * 1000,
            "audio_p50": pct(audio, 0.5) * 1000,
            "audio_p95": pct(audio, 0.95) * 1000,
            "fps": len(video) / elapsed,
            "cpu": cpu,
        }
    finally:
        proc.terminate()
        proc.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--codecs", default="VP8,H264")
    args = parser.parse_args()
    rows = []
    port = 7870
    for codec in args.codecs.split(","):
        for client in (False, True):
            results = {}
            for server in ("aiortc-echo", "mirage (sync off)", "mirage"):
                port += 1
                results[server] = await measure(server, codec, args.seconds, client, port)
            rows.append((codec, client, results))
    print(
        f"\n512x512 @ 20 fps, {args.seconds:.0f} s per run, loopback; ms; CPU% of the server"
        " process (100% = one core)\n"
    )
    print(
        "| codec | client receive | server | video p50 | video p95 | audio p50 | audio p95 |"
        " fps | CPU% | video vs echo | audio vs echo |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for codec, client, results in rows:
        echo = results["aiortc-echo"]
        for server, r in results.items():
            rv = r["video_p50"] / echo["video_p50"]
            ra = r["audio_p50"] / echo["audio_p50"]
            kind = "low-latency" if client else "stock aiortc"
            print(
                f"| {codec} | {kind} | {server} | {r['video_p50']:.0f} | {r['video_p95']:.0f} | "
                f"{r['audio_p50']:.0f} | {r['audio_p95']:.0f} | {r['fps']:.1f} | {r['cpu']:.0f} |"
                f" {rv:.2f}× | {ra:.2f}× |"
            )


if __name__ == "__main__":
    asyncio.run(main())
