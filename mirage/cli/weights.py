"""``mirage weights list|download|verify``: the weight files each backend needs.

The catalog (paths, sources, sizes, sha256, licences) is ``mirage.ops.catalog``; fetching
and checking are ``mirage.ops.download``. This module only parses flags and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from mirage.config import Settings, from_env
from mirage.ops.catalog import (
    DEFAULT_BASE_URL,
    UnknownTarget,
    WeightFile,
    human_size,
    select,
)
from mirage.ops.download import Check, Downloader, DownloadError, check
from mirage.weights import models_dir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("weights", help="list, download and verify model weights")
    p.add_argument("action", choices=("list", "download", "verify"))
    p.add_argument(
        "targets",
        nargs="*",
        help="backends (liveportrait, scrfd, rvc) or file names; default: all",
    )
    p.add_argument("--models-dir", help="weights folder (default models/; env MIRAGE_MODELS_DIR)")
    p.add_argument(
        "--base-url",
        help=f"download mirror with the hub's layout (default {DEFAULT_BASE_URL}; "
        "env MIRAGE_WEIGHTS_URL)",
    )
    p.add_argument(
        "--non-commercial",
        action="store_true",
        help="also download files licensed for non-commercial use only (insightface det_10g)",
    )
    p.add_argument("--retries", type=int, default=3, help="resumed attempts after a drop")
    p.add_argument(
        "--fast", action="store_true", help="verify: sizes only, skip the sha256 of each file"
    )


def _root(args: argparse.Namespace, env: dict[str, str]) -> Path:
    settings = from_env(env, Settings())
    return models_dir(args.models_dir or settings.models_dir)


def _short(sha: str | None) -> str:
    return sha[:12] + "…" if sha else "unknown (not verified)"


def _source(entry: WeightFile) -> str:
    return f"hf:{entry.repo}/{entry.remote}" if entry.downloadable else "your file"


def _print_licences(entries: list[WeightFile], out: TextIO) -> None:
    notes = sorted({e.licence for e in entries})
    print("\nLicences:", file=out)
    for note in notes:
        print(f"  - {note}", file=out)


def do_list(entries: list[WeightFile], root: Path, out: TextIO) -> int:
    print(f"weights folder: {root}", file=out)
    print(
        f"{'backend':<13} {'file':<64} {'size':>9} {'sha256':<22} {'here':<8} source",
        file=out,
    )
    for e in entries:
        here = "yes" if (root / e.path).is_file() else "no"
        need = "" if e.required else " (optional)"
        print(
            f"{e.backend:<13} {e.path + need:<64} {human_size(e.size):>9} "
            f"{_short(e.sha256):<22} {here:<8} {_source(e)}",
            file=out,
        )
    _print_licences(entries, out)
    return 0


def do_verify(entries: list[WeightFile], root: Path, checksum: bool, out: TextIO) -> int:
    print(f"weights folder: {root}", file=out)
    checks: list[Check] = []
    for e in entries:
        c = check(e, root, checksum=checksum)
        checks.append(c)
        print(f"{c.status:<10} {e.path:<64} {c.detail}", file=out)
    corrupt = [c for c in checks if c.status == "corrupt"]
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "unverified", "missing")}
    print(
        f"\n{counts['ok']} ok, {counts['unverified']} present but not verifiable, "
        f"{counts['missing']} missing, {len(corrupt)} corrupt",
        file=out,
    )
    if corrupt:
        print("corrupt files must be replaced: mirage weights download <file>", file=out)
    return 1 if corrupt else 0


def do_download(
    entries: list[WeightFile],
    downloader: Downloader,
    non_commercial: bool,
    out: TextIO,
) -> int:
    print(f"weights folder: {downloader.root}  (from {downloader.base_url})", file=out)
    failed = 0
    for e in entries:
        if not e.downloadable:
            print(f"skip       {e.path}: {e.description}", file=out)
            continue
        if e.noncommercial and not non_commercial:
            print(
                f"skip       {e.path}: {e.licence}; pass --non-commercial to download it",
                file=out,
            )
            continue
        try:
            result = downloader.fetch(e)
        except DownloadError as exc:
            failed += 1
            print(f"FAILED     {exc}", file=out)
            continue
        print(f"{result.status:<10} {e.path}: {result.detail}", file=out)
    _print_licences([e for e in entries if e.downloadable], out)
    return 1 if failed else 0


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    env = dict(os.environ)
    try:
        entries = select(args.targets)
    except UnknownTarget as exc:
        print(f"mirage weights: {exc}", file=sys.stderr)
        return 2
    root = _root(args, env)
    if args.action == "list":
        return do_list(entries, root, out)
    if args.action == "verify":
        return do_verify(entries, root, not args.fast, out)
    downloader = Downloader(
        root=root,
        base_url=args.base_url or env.get("MIRAGE_WEIGHTS_URL") or DEFAULT_BASE_URL,
        token=env.get("HF_TOKEN") or None,
        retries=max(0, args.retries),
    )
    return do_download(entries, downloader, args.non_commercial, out)
