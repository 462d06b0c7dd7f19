"""``mirage client``: camera and microphone (or a file) → a Mirage server → a virtual
camera, a virtual microphone and/or an mp4 (see mirage/client/desktop.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return parsed


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "client",
        help="send your camera and mic to a server; avatar to a virtual camera/mic or a file",
        description="Send a camera and microphone (or a file) to a Mirage server and put "
        "the avatar into a virtual camera, the voice into a virtual microphone, or both "
        "into an mp4. Reconnects with backoff; Ctrl-C ends it cleanly.",
    )
    p.add_argument("--server", default="http://127.0.0.1:7860", help="Mirage server URL")
    p.add_argument(
        "--token",
        help="Bearer token for a server with auth (default: env MIRAGE_TOKEN; "
        "prefer the variable, flags show in the process list)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", default="0", help="camera: N for /dev/videoN (default 0)")
    src.add_argument("--input", help="a media file to send instead of the camera and mic")
    p.add_argument("--loop", action="store_true", help="repeat --input forever")
    p.add_argument("--mic", default="default", help="microphone (PulseAudio source name)")
    p.add_argument("--no-video", action="store_true", help="send no camera")
    p.add_argument("--no-audio", action="store_true", help="send no microphone")
    p.add_argument(
        "--virtual-camera",
        nargs="?",
        const="",
        metavar="DEVICE",
        help="show the avatar in a virtual camera (optionally a device, e.g. /dev/video10)",
    )
    p.add_argument(
        "--virtual-mic",
        nargs="?",
        const="mirage_mic",
        metavar="SINK",
        help="play the voice into a virtual microphone (default sink: mirage_mic)",
    )
    p.add_argument("--record", metavar="OUT.mp4", help="record the avatar and voice to an mp4")
    p.add_argument("--reference", metavar="PORTRAIT", help="portrait image for this session")
    p.add_argument("--face", help="face backend (default: the server's)")
    p.add_argument("--voice", help="voice backend (default: the server's)")
    p.add_argument("--face-options", type=_json_object, default={}, help="JSON object")
    p.add_argument("--voice-options", type=_json_object, default={}, help="JSON object")
    p.add_argument("--quality", help="auto (default), a level name or index")
    p.add_argument("--size", type=int, default=512, help="virtual camera/recording size")
    p.add_argument("--fps", type=float, default=20.0, help="virtual camera/recording rate")
    p.add_argument(
        "--ice-server", action="append", dest="ice_servers", default=[], help="STUN/TURN URL"
    )
    p.add_argument(
        "--ice-host",
        action="append",
        dest="ice_hosts",
        default=[],
        help="host address ICE may offer (repeatable; 127.0.0.1 for a local server)",
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--log-level", default="WARNING")


def run(args: argparse.Namespace) -> int:
    from mirage.client.connect import ClientOptions
    from mirage.client.desktop import DesktopOptions, run_client

    connection = ClientOptions(
        server=args.server,
        token=args.token or os.environ.get("MIRAGE_TOKEN") or None,
        face=args.face,
        voice=args.voice,
        quality=args.quality,
        face_options=args.face_options,
        voice_options=args.voice_options,
        reference=args.reference,
        ice_servers=tuple(args.ice_servers),
        ice_hosts=tuple(args.ice_hosts),
    )
    options = DesktopOptions(
        connection,
        input=args.input,
        loop=args.loop,
        camera=args.camera,
        mic=args.mic,
        send_video=not args.no_video,
        send_audio=not args.no_audio,
        virtual_camera=args.virtual_camera is not None,
        camera_device=args.virtual_camera or None,
        virtual_mic=args.virtual_mic is not None,
        mic_sink=args.virtual_mic,
        record=args.record,
        size=args.size,
        fps=args.fps,
        duration_s=args.duration,
    )
    try:
        return asyncio.run(run_client(options))
    except KeyboardInterrupt:  # platforms without loop signal handlers
        return 0
