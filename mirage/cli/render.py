"""``mirage render``: animate a portrait with a driving video, offline, into a video file.

Thin: parses the flags into a ``RenderJob`` (backend defaults from the same
``MIRAGE_*`` settings the server reads) and reports errors as one line on stderr
with a non-zero exit status. The work is in ``mirage.offline``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from mirage.config import Settings, from_env

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def parse_option(text: str) -> tuple[str, Any]:
    """``k=v`` → (k, v); v as JSON where it parses (numbers, true/false), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), parsed


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "render",
        help="animate a portrait with a driving video, offline, into a video file",
        description="Animate --reference with the face and voice of --driving, offline, "
        "with the same backends as the live server; writes H.264 + AAC.",
    )
    p.add_argument("--reference", required=True, type=Path, help="portrait (JPEG, PNG, WebP)")
    p.add_argument("--driving", required=True, type=Path, help="driving video (with speech)")
    p.add_argument("--out", required=True, type=Path, help="output file (.mp4, .mov, .mkv)")
    p.add_argument(
        "--face", help="face backend: auto (the server's choice), warp, liveportrait, passthrough"
    )
    p.add_argument(
        "--face-option",
        action="append",
        type=parse_option,
        default=[],
        metavar="K=V",
        help="face backend option (repeatable)",
    )
    p.add_argument(
        "--voice",
        help="voice backend (auto, dsp, rvc, passthrough) or a dsp preset "
        "(deep, bright, masculine, child, giant, robot, whisper, neutral)",
    )
    p.add_argument(
        "--voice-option",
        action="append",
        type=parse_option,
        default=[],
        metavar="K=V",
        help="voice backend option (repeatable), e.g. semitones=-3",
    )
    p.add_argument("--no-audio", action="store_true", help="write the video only")
    p.add_argument("--size", type=int, default=512, help="output side in pixels (default 512)")
    p.add_argument(
        "--max-seconds", type=float, help="render only the first this many seconds of the driver"
    )
    p.add_argument("--models-dir", help="weights folder (default models/; env MIRAGE_MODELS_DIR)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--log-level", default="WARNING")


def job_from_args(args: argparse.Namespace, settings: Settings) -> Any:
    from mirage.engine.backends import GuardPolicy
    from mirage.offline.render import RenderJob

    return RenderJob(
        reference=args.reference,
        driving=args.driving,
        out=args.out,
        face=args.face or settings.face,
        face_options=dict(args.face_option),
        voice=args.voice or settings.voice,
        voice_options=dict(args.voice_option),
        voice_preset=settings.voice_preset,
        audio=not args.no_audio,
        size=args.size,
        max_seconds=args.max_seconds,
        models_dir=args.models_dir or settings.models_dir,
        test_backends=settings.test_backends,
        guard=GuardPolicy.of(settings),  # MIRAGE_MODEL_TIMEOUT_S etc., as the server
    )


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: no partial file is left


def run(args: argparse.Namespace) -> int:
    import av

    from mirage.models.base import MirageError
    from mirage.offline.render import render

    job = job_from_args(args, from_env(dict(os.environ)))
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = render(job, progress=None if args.quiet else sys.stderr)
    except (MirageError, OSError, av.FFmpegError) as exc:  # inputs, backends, disk
        print(f"mirage render: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mirage render: interrupted; no output written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    voice = f", voice {result.voice}" if result.voice else ", no audio"
    problems = ""
    if result.face_errors or result.voice_errors:
        problems = (
            f" ({result.face_errors} frame(s) and {result.voice_errors} audio block(s) "
            "failed in the backend and were passed through)"
        )
    print(
        f"wrote {result.out}: {result.frames} frames {result.size}x{result.size} at "
        f"{float(result.fps):g} fps ({result.codec}), face {result.face}{voice}, "
        f"in {result.seconds:.1f} s ({result.frames / max(result.seconds, 1e-9):.1f} fps)"
        f"{problems}",
        file=sys.stderr,
    )
    return 0
