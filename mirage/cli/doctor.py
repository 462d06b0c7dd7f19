"""``mirage doctor``: which backends, weights, GPU and devices this machine has, and why not.

Exit status 0 when the configured face and voice backends can run, 1 otherwise (the
report says which file or package is missing). The checks are ``mirage.ops.doctor``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from mirage.config import Settings, from_env


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check GPU, codecs, weights and backends; explain auto")
    p.add_argument("--face", help="face backend to check (default: MIRAGE_FACE or auto)")
    p.add_argument("--voice", help="voice backend to check (default: MIRAGE_VOICE or auto)")
    p.add_argument("--models-dir", help="weights folder (default models/; env MIRAGE_MODELS_DIR)")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument(
        "--checksums", action="store_true", help="sha256 every weight file (slow; sizes otherwise)"
    )
    p.add_argument("--log-level", default="WARNING")


def settings_from_args(args: argparse.Namespace, env: dict[str, str]) -> Settings:
    settings = from_env(env, Settings())
    changes = {
        key: value
        for key in ("face", "voice", "models_dir")
        if (value := getattr(args, key, None)) is not None
    }
    return settings.replace(**changes)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from mirage.ops.doctor import diagnose, render

    out = out or sys.stdout
    report = diagnose(settings_from_args(args, dict(os.environ)), checksums=args.checksums)
    if args.json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        print(render(report), file=out)
    return 0 if report["ok"] else 1
