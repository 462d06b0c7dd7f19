"""The video's lead from a receiver report, seen at the server's own output.

    python bench/sync_lead.py [--voice dsp] [--video-ms 40] [--audio-ms 10] [--seconds 4]

The stock aiortc probe talks to an in-process Mirage (passthrough face); for
``--seconds`` without a report and again after ``PATCH /sessions/{id}
{"receiver_delay_ms": ...}``, the session's own output ages (send time − capture
time of the newest audio and video output) are sampled every 0.1 s. Their
difference is the lead the server actually gives the video (at most what the
voice's delay leaves room for: the video never leaves before it is ready).
Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mirage.app import create_app
from mirage.client.probe import Probe
from mirage.state import SERVER
from tests.server_fixtures import LOOPBACK, base_url


async def run(args: argparse.Namespace) -> None:
    server = TestServer(create_app(LOOPBACK), host="127.0.0.1")
    await server.start_server()
    probe = Probe(base_url(server), options={"face": "passthrough", "voice": args.voice})
    try:
        await probe.connect()
        await asyncio.sleep(4.0)  # the playout delay settles
        session = server.app[SERVER].sessions[probe.session_id]
        assert session.audio is not None and session.video is not None

        async def phase(name: str) -> None:
            raw, lead, delay = [], [], []
            for _ in range(int(args.seconds * 10)):
                await asyncio.sleep(0.1)
                a, v = session.audio.output_age, session.video.output_age  # type: ignore[union-attr]
                if a is not None and v is not None:
                    raw.append(1000 * (a - v))
                lead.append(session.stats()["video_lead_ms"])
                delay.append(1000 * session.clock.delay_s)
            print(
                f"| {name} | {statistics.median(lead):.0f} | {statistics.median(delay):.0f} "
                f"| {statistics.median(raw):.0f} |"
            )

        print("| phase | video lead (ms) | playout delay (ms) | audio − video output age (ms) |")
        print("|---|---|---|---|")
        await phase("no report")
        report = {"receiver_delay_ms": {"video": args.video_ms, "audio": args.audio_ms}}
        url = f"{base_url(server)}/sessions/{probe.session_id}"
        async with aiohttp.ClientSession() as http, http.patch(url, json=report) as resp:
            resp.raise_for_status()
        await asyncio.sleep(1.0)
        await phase(f"report video {args.video_ms:g} / audio {args.audio_ms:g} ms")
    finally:
        await probe.close()
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voice", default="dsp")
    parser.add_argument("--video-ms", type=float, default=40.0)
    parser.add_argument("--audio-ms", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=4.0, help="sampled seconds per phase")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
