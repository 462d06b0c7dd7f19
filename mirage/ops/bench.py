"""``mirage bench``: run the bench/ scripts that apply here, one headline number each, one table.

Each script runs as its own process (as a person would run it, with its own CPU pinning)
and prints its full table; this module picks one headline out of that table. The
parsers read the tables the scripts print today; a script whose table changes shape
still runs, and its row says "no headline parsed" rather than a wrong number.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "bench"

Headline = tuple[str, float | None, str]  # (text, value, unit)


def _md_rows(text: str) -> list[list[str]]:
    """Cells of every markdown table row that is not a header rule."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _num(cell: str) -> float | None:
    match = re.search(r"[-+]?\d+(?:\.\d+)?", cell)
    return float(match.group()) if match else None


def parse_voice(text: str) -> Headline | None:
    """First converter row of bench/voice.py's Markdown table, read by its header."""
    rows = _md_rows(text)
    header = next((r for r in rows if r and r[0] == "converter"), None)
    if header is None:
        return None
    wanted = ("block ms", "ms/block", "RTF", "block + latency_s ms")
    if not all(name in header for name in wanted):
        return None
    columns = [header.index(name) for name in wanted]
    for row in rows[rows.index(header) + 1 :]:
        if len(row) != len(header):
            continue
        values = [_num(row[i]) for i in columns]
        if any(v is None for v in values):
            continue
        block, ms, rtf, latency = (float(v) for v in values if v is not None)
        return (
            f"{row[0]}, {block:g} ms blocks: RTF {rtf:.3f}, {ms:.1f} ms/block, "
            f"latency {latency:.0f} ms",
            rtf,
            "RTF",
        )
    return None


def parse_avatar(text: str) -> Headline | None:
    """The first size row (the largest asked for) of ``size | stages… | total ms | p95 | cpu ms | fps``."""
    best: Headline | None = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 5 or not cells[0].isdigit():
            continue
        size, total, fps = int(cells[0]), _num(cells[-4]), _num(cells[-1])
        if fps is None or total is None:
            continue
        if best is None:
            best = (f"{size} px: {fps:.1f} fps ({total:.1f} ms/frame)", fps, "fps")
    return best


def parse_loopback(text: str) -> Headline | None:
    """The ``mirage`` server with the low-latency client: video/audio round trip p50."""
    for cells in _md_rows(text):
        if len(cells) >= 7 and cells[2] == "mirage" and cells[1] == "low-latency":
            video, audio = _num(cells[3]), _num(cells[5])
            return (f"{cells[0]} round trip p50: video {video:.0f} ms, audio {audio:.0f} ms",
                    video, "ms")  # fmt: skip
    return None


def parse_sync(text: str) -> Headline | None:
    """The first case: median A/V skew and its largest absolute value."""
    for cells in _md_rows(text):
        if len(cells) >= 5 and cells[0] != "case":
            median, worst = _num(cells[2]), _num(cells[4])
            if median is None or worst is None:
                continue
            return (f"{cells[0]}: skew median {median:+.0f} ms, max |skew| {worst:.0f} ms",
                    median, "ms")  # fmt: skip
    return None


def parse_liveportrait(text: str) -> Headline | None:
    """The fastest variant's end-to-end ms per frame and fps."""
    best: Headline | None = None
    for cells in _md_rows(text):
        if len(cells) < 4 or cells[0] == "variant":
            continue
        fps, e2e = _num(cells[-1]), _num(cells[-2])
        if fps is None or e2e is None:
            continue
        if best is None or (best[1] is not None and fps > best[1]):
            best = (f"{cells[0]}: {e2e:.1f} ms/frame e2e, {fps:.2f} fps", fps, "fps")
    return best


def parse_rvc(text: str) -> Headline | None:
    """The last device row (a GPU when present): ms per block and RTF."""
    found: Headline | None = None
    for line in text.splitlines():
        parts = line.rsplit(maxsplit=6)
        if len(parts) != 7:
            continue
        try:
            block, mean, _p50, _p95, rtf, _lat = (float(p) for p in parts[1:])
        except ValueError:
            continue
        found = (f"{parts[0].strip()}, {block:.0f} ms blocks: {mean:.1f} ms/block, RTF {rtf:.2f}",
                 mean, "ms/block")  # fmt: skip
    return found


@dataclass(frozen=True)
class Script:
    """One bench script: its arguments (quick and full), when it applies, how to read it."""

    name: str
    file: str
    what: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    parse: Callable[[str], Headline | None]
    needs_weights: str | None = None  # a registry face/voice backend whose weights it wants
    quick_cuda: tuple[str, ...] | None = None  # quick arguments when CUDA is present


SCRIPTS: tuple[Script, ...] = (
    Script("voice", "voice.py", "voice converter speed (1 core)",
           ("--backend", "dsp", "--option", "preset=bright", "--seconds", "3"), (), parse_voice),
    Script("avatar", "avatar.py", "warp animator speed (1 core)",
           ("--sizes", "512", "--frames", "30"), (), parse_avatar),
    Script("loopback", "loopback.py", "round trip vs plain aiortc",
           ("--seconds", "4", "--codecs", "VP8"), (), parse_loopback),
    Script("sync", "sync.py", "A/V skew through the server", ("--seconds", "15"), (), parse_sync),
    Script("liveportrait", "liveportrait.py", "LivePortrait per frame",
           ("--frames", "2", "--warmup", "1"), (), parse_liveportrait,
           needs_weights="liveportrait",
           quick_cuda=("--frames", "20", "--warmup", "5", "--no-cpu")),
    Script("rvc", "rvc.py", "RVC per block (seeded full-size weights)",
           ("--device", "cpu", "--n", "5", "--blocks", "160"), (), parse_rvc,
           needs_weights="rvc", quick_cuda=("--device", "cuda", "--n", "30", "--blocks", "160")),
)  # fmt: skip


@dataclass
class Row:
    name: str
    what: str
    status: str  # ok | skipped | failed
    headline: str
    value: float | None = None
    unit: str = ""
    seconds: float = 0.0
    command: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def plan(
    only: Sequence[str] = (),
    run_all: bool = False,
    quick: bool = True,
    models_dir: str | None = None,
) -> list[tuple[Script, list[str] | None, str]]:
    """(script, argv or None when skipped, why) for each script, in order."""
    from mirage.models import registry

    unknown = set(only) - {s.name for s in SCRIPTS}
    if unknown:
        known = ", ".join(s.name for s in SCRIPTS)
        raise ValueError(f"unknown bench {', '.join(sorted(unknown))}; known: {known}")
    cuda = _cuda()
    chosen: list[tuple[Script, list[str] | None, str]] = []
    for script in SCRIPTS:
        if only and script.name not in only:
            continue
        if script.needs_weights and not run_all and not only:
            kind: registry.Kind = "face" if script.needs_weights == "liveportrait" else "voice"
            reason = registry.unavailable_reason(
                registry.find(kind, script.needs_weights), models_dir
            )
            if reason is not None:
                chosen.append((script, None, f"no {script.needs_weights} weights (--all runs it)"))
                continue
        args = list(script.quick if quick else script.full)
        if quick and cuda and script.quick_cuda is not None:
            args = list(script.quick_cuda)
        if script.name == "liveportrait" and models_dir:
            args += ["--models-dir", models_dir]
        argv = [sys.executable, str(BENCH_DIR / script.file), *args]
        chosen.append((script, argv, "cuda" if cuda else "cpu"))
    return chosen


def run_one(script: Script, argv: list[str], timeout_s: float) -> Row:
    start = time.monotonic()
    try:
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return Row(script.name, script.what, "failed", f"timed out after {timeout_s:.0f} s",
                   seconds=time.monotonic() - start, command=argv)  # fmt: skip
    seconds = time.monotonic() - start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return Row(script.name, script.what, "failed", f"exit {done.returncode}: {tail}",
                   seconds=seconds, command=argv)  # fmt: skip
    headline = script.parse(done.stdout)
    if headline is None:
        return Row(script.name, script.what, "ok", "ran; no headline parsed (see its output)",
                   seconds=seconds, command=argv)  # fmt: skip
    text, value, unit = headline
    return Row(script.name, script.what, "ok", text, value, unit, seconds, argv)


def run_all(
    only: Sequence[str] = (),
    include_all: bool = False,
    quick: bool = True,
    models_dir: str | None = None,
    timeout_s: float = 600.0,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    rows = []
    for script, argv, why in plan(only, include_all, quick, models_dir):
        if argv is None:
            row = Row(script.name, script.what, "skipped", why)
        else:
            row = run_one(script, argv, timeout_s)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def table(rows: Sequence[Row]) -> str:
    lines = ["| bench | what | result | s |", "|---|---|---|---|"]
    for r in rows:
        result = r.headline if r.status == "ok" else f"{r.status}: {r.headline}"
        lines.append(f"| {r.name} | {r.what} | {result} | {r.seconds:.0f} |")
    return "\n".join(lines)
