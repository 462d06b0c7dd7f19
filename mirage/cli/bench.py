"""``mirage bench``: run the bench/ scripts that apply to this machine; print one table.

CPU scripts always run; LivePortrait and RVC only when their weights are present (or
with ``--all``, or when named in ``--only``); their CUDA variants only with a GPU. Each
script keeps its own full output: run it directly for details (``python bench/<name>.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from mirage.config import Settings, from_env


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="run the benchmarks that apply here; one summary table")
    p.add_argument("--only", help="comma-separated: voice,avatar,loopback,sync,liveportrait,rvc")
    p.add_argument("--all", action="store_true", help="also the weight-needing benchmarks")
    p.add_argument("--quick", action="store_true", help="short runs (seconds, not minutes)")
    p.add_argument("--models-dir", help="weights folder (default models/; env MIRAGE_MODELS_DIR)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per script")
    p.add_argument("--json", action="store_true", help="rows as JSON instead of the table")
    p.add_argument("--log-level", default="WARNING")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from mirage.ops import bench

    out = out or sys.stdout
    settings = from_env(dict(os.environ), Settings())
    only = [name.strip() for name in (args.only or "").split(",") if name.strip()]
    models_dir = args.models_dir or settings.models_dir

    def progress(row: bench.Row) -> None:
        print(f"{row.name}: {row.status} ({row.seconds:.0f} s)", file=sys.stderr, flush=True)

    try:
        rows = bench.run_all(only, args.all, args.quick, models_dir, args.timeout, on_row=progress)
    except ValueError as exc:
        print(f"mirage bench: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump([r.as_dict() for r in rows], out, indent=2)
        out.write("\n")
    else:
        print(bench.table(rows), file=out)
    return 1 if any(r.status == "failed" for r in rows) else 0
