"""The playout clock from inside one dsp session, as an independent check of bench/sync.py.

    python bench/sync_trace.py [--seconds 15]

Every 0.5 s it prints the session's playout delay, the voice's own capture→ready
p95 over its window and its median inbound delay (ms); at the end, the probe's buzz
round trips. bench/sync.py times the same session from the client side only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mirage.app import create_app
from mirage.client.probe import Probe
from mirage.config import Settings
from mirage.state import SERVER

OPTIONS: dict[str, object] = {
    "face": "passthrough",
    "voice": "dsp",
    "voice_options": {"preset": "bright"},
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    app = create_app(Settings(ice_hosts=("127.0.0.1",)))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    probe = Probe(f"http://127.0.0.1:{runner.addresses[0][1]}", sync_marks=True, options=OPTIONS)
    try:
        await probe.connect()
        print("| t s | playout delay | voice own p95 | voice inbound median |")
        print("|---|---|---|---|")
        for i in range(int(args.seconds * 2)):
            await asyncio.sleep(0.5)
            session = next(iter(app[SERVER].sessions.values()))
            # the clock's own windows (private: this is a diagnostic)
            own_window = session.clock._own.get("audio")
            own = sorted(own_window)[int(0.95 * (len(own_window) - 1))] if own_window else None
            inbound = session.clock._inbound.get("audio")
            print(
                f"| {(i + 1) / 2:.1f} | {session.clock.delay_s * 1000:.0f} | "
                f"{'-' if own is None else f'{own * 1000:.0f}'} | "
                f"{'-' if not inbound else f'{statistics.median(inbound) * 1000:.0f}'} |"
            )
        trips = [round(a * 1000) for a in probe.received.audio_latency]
        print(f"\nbuzz round trips (ms): {trips}")
        if trips:
            print(f"median {statistics.median(trips):.0f} ms")
    finally:
        await probe.close()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
