"""A bot that relays a file through Mirage into a recorder.

A meeting bot has the same shape: the tracks it receives from the meeting go
into ``relay.transform`` and the tracks that come out go back into the meeting
(here: a file stands in for the meeting's camera and microphone, and an mp4
recorder for the meeting)::

    python examples/relay_bot.py --server http://127.0.0.1:7860 --input in.mp4 --output out.mp4
    python examples/relay_bot.py --local --face warp --voice dsp --input in.mp4 --output out.mp4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from aiortc.contrib.media import MediaPlayer

from mirage.client.record import TrackRecorder
from mirage.client.relay import LocalRelay, MirageRelay
from mirage.config import from_env


async def relay_file(args: argparse.Namespace) -> int:
    player = MediaPlayer(args.input)  # the bot's incoming camera and microphone
    relay: Any
    if args.local:
        # Settings from MIRAGE_* once, here at the top (models dir, the test-only switch).
        settings = from_env(os.environ)
        relay = LocalRelay(face=args.face or "warp", voice=args.voice or "dsp", settings=settings)
    else:
        relay = MirageRelay(
            args.server,
            token=os.environ.get("MIRAGE_TOKEN"),
            face=args.face,
            voice=args.voice,
            ice_hosts=tuple(args.ice_host),
        )
    async with relay:
        video, audio = await relay.transform(player.video, player.audio)
        recorder = TrackRecorder(args.output, video, audio)  # the meeting the bot speaks into
        await recorder.start()
        await asyncio.sleep(args.seconds)
        await recorder.stop()
    for track in (player.video, player.audio):
        if track is not None:
            track.stop()
    print(f"relayed {args.seconds:g} s of {args.input} into {args.output}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="Mirage server URL")
    where.add_argument("--local", action="store_true", help="run the models in this process")
    parser.add_argument("--input", required=True, help="media file standing in for the meeting")
    parser.add_argument("--output", required=True, help="mp4 to record the relayed tracks to")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--face")
    parser.add_argument("--voice")
    parser.add_argument("--ice-host", action="append", default=[], help="e.g. 127.0.0.1")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(relay_file(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
