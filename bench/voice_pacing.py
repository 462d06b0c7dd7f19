"""Does the voice leave in real time? Seconds of voice sent per second of wall clock.

A voice stream that leaves faster than real time (each rise of the playout delay
inserting silence, each fall sending the voice early) runs ahead of the wall clock,
and a recorder or virtual microphone, which plays samples back to back, drifts out
of sync with the video. Two counts that could disagree: the server's frames sent
(``stats()["audio"]["frames_out"]`` × 20 ms) and the probe's frames received (its
arrival log), both over the same wall-clock window, with ``--hog`` busy processes
loading the machine the way a busy CI run does.

    python bench/voice_pacing.py [--seconds 10] [--hog 0 1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mirage.app import create_app  # noqa: E402
from mirage.client.probe import Probe  # noqa: E402
from mirage.config import Settings  # noqa: E402
from mirage.state import SERVER  # noqa: E402

FRAME_S = 0.02
CASES: dict[str, dict[str, object]] = {
    "invert + dsp": {"face": "invert", "voice": "dsp"},
    "passthrough + passthrough": {"face": "passthrough", "voice": "passthrough"},
}


def hogs(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


async def run(name: str, options: dict[str, object], seconds: float, hog: int) -> str:
    app = create_app(Settings(ice_hosts=("127.0.0.1",), test_backends=True))  # invert
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    probe = Probe(f"http://127.0.0.1:{port}", options=options)
    busy = hogs(hog)
    try:
        await probe.connect()
        await asyncio.sleep(2.0)  # past the first frames and the delay's first rise
        session = app[SERVER].sessions[probe.session_id]
        sent0, t0 = session.stats()["audio"]["frames_out"], time.monotonic()
        delays = []
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(0.1)
            delays.append(session.clock.delay_s * 1000)
        sent1, t1 = session.stats()["audio"]["frames_out"], time.monotonic()
        wall = t1 - t0
        got = sum(1 for t in probe.received.audio_times if t0 <= t < t1)
        rises = sum(1 for a, b in itertools.pairwise(delays) if b > a + 1.0)
        return (
            f"| {name} | {hog} | {wall:.1f} | {(sent1 - sent0) * FRAME_S / wall:.3f} "
            f"| {got * FRAME_S / wall:.3f} | {min(delays):.0f} … {max(delays):.0f} | {rises} |"
        )
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
        await probe.close()
        await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hog", type=int, nargs="+", default=[0, 1], help="busy processes")
    args = parser.parse_args()
    rows = [
        await run(name, options, args.seconds, hog)
        for hog in args.hog
        for name, options in CASES.items()
    ]
    print(f"\nVoice pacing over {args.seconds:.0f} s (1.000 = real time)\n")
    print("| case | busy processes | wall s | sent s/s (server) | received s/s (probe) "
          "| playout delay ms | delay rises |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
