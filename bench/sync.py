"""A/V skew and latency through Mirage: a white flash and a voice-like buzz leave the
probe together once a second; their return is timed (audio latency − video latency),
and so is each one's round trip (the buzz: its first loud sample sent → received).

    python bench/sync.py [--seconds 20] [--only dsp]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mirage.app import create_app  # noqa: E402
from mirage.client.probe import Probe  # noqa: E402
from mirage.config import Settings  # noqa: E402
from mirage.state import SERVER  # noqa: E402

CASES: dict[str, dict[str, object]] = {
    "passthrough + passthrough": {"face": "passthrough", "voice": "passthrough"},
    "passthrough + dsp (bright)": {
        "face": "passthrough",
        "voice": "dsp",
        "voice_options": {"preset": "bright"},
    },
    "passthrough + dsp (bright, block_ms=160)": {
        "face": "passthrough",
        "voice": "dsp",
        "voice_options": {"preset": "bright", "block_ms": 160},
    },
    "face 100 ms slower + passthrough": {
        "face": "slow",
        "face_options": {"delay_ms": 100},
        "voice": "passthrough",
    },
    "passthrough + voice 150 ms slower": {
        "face": "passthrough",
        "voice": "delay",
        "voice_options": {"delay_ms": 150},
    },
}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")
    )


async def run(name: str, options: dict[str, object], seconds: float) -> str:
    app = create_app(Settings(ice_hosts=("127.0.0.1",)))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()  # a free port: others may run too
    port = runner.addresses[0][1]
    probe = Probe(f"http://127.0.0.1:{port}", sync_marks=True, options=options)
    try:
        await probe.connect()
        await asyncio.sleep(seconds)
        skews = [s * 1000 for s in probe.av_skew()[1:]]
        session = next(iter(app[SERVER].sessions.values()))
        delay = session.clock.delay_s * 1000
        video = [v * 1000 for v in probe.received.video_latency[40:]]
        audio = [a * 1000 for a in probe.received.audio_latency[1:]]
        return (
            f"| {name} | {len(skews)} | {median(skews):+.0f} | "
            f"{pct(skews, 0.05):+.0f} … {pct(skews, 0.95):+.0f} | "
            f"{max((abs(s) for s in skews), default=float('nan')):.0f} | {delay:.0f} | {pct(video, 0.5):.0f} | "
            f"{pct(audio, 0.5):.0f} |"
        )
    finally:
        await probe.close()
        await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", default="", help="run the cases whose name holds this")
    args = parser.parse_args()
    rows = []
    for name, options in CASES.items():
        if args.only in name:
            rows.append(await run(name, options, args.seconds))
    print(f"\nA/V skew (ms, + = audio later), {args.seconds:.0f} s per case, loopback\n")
    print(
        "| case | marks | median | p5 … p95 | max abs | playout delay | video RTT p50 "
        "| audio RTT p50 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
