"""Gaps in the voice: 20 ms frames of silence inside a continuous voiced input.

A server runs in a process of its own (as in use: no client in its interpreter);
the stock aiortc probe sends a continuous voice-like buzz (180 Hz, 10 harmonics)
and the camera, for ``--seconds``, with ``--hog`` busy processes loading the
machine. Two counts that could disagree:

- **server**: its own counters over the span (``/metrics``): voice frames sent,
  of them silence because the converter was late (``frames_filled``), and voice
  dropped as late;
- **probe**: holes in the returned bursts: runs of 1–3 frames (20–60 ms) under
  1 % of the bursts' median RMS with loud frames on both sides (a burst is 300 ms
  of every 500; the pauses between them are 10 frames, not holes): what a listener
  hears as a dropout. Silence the server sends between bursts is not seen.

``--variant-root`` runs a second server from another checkout (e.g. `git archive`
of main), alternating with this one run by run, so both see the same load drift.

    python bench/voice_gaps.py [--seconds 10] [--hog 0 1] [--repeat 3]
        [--voice dsp] [--face passthrough] [--variant-root DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mirage.client.probe import Probe  # noqa: E402
from tests.browser_e2e import start_and_wait  # noqa: E402

PORTS = {"this tree": 8794, "variant": 8795}
WANTED = {
    'mirage_frames_out_total{track="audio"}': "sent",
    'mirage_frames_filled_total{track="audio"}': "filled",
    'mirage_frames_dropped_total{stage="late",track="audio"}': "dropped_late",
    'mirage_frames_dropped_total{stage="output",track="audio"}': "dropped_output",
    'mirage_frames_dropped_total{stage="input",track="audio"}': "dropped_input",
}


def server(port: int, root: Path | None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mirage", "serve", "--port", str(port)]
    cmd += ["--ice-host", "127.0.0.1", "--log-level", "WARNING"]
    env = {**os.environ, "PYTHONPATH": str(root)} if root else None
    return start_and_wait(cmd, f"http://127.0.0.1:{port}/health", cwd=root or ROOT, env=env)


def counts(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    out = dict.fromkeys(WANTED.values(), 0.0)
    for line in text.decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name in WANTED:
            out[WANTED[name]] = float(value)
    return out


async def one_run(port: int, options: dict[str, object], seconds: float) -> dict[str, float]:
    probe = Probe(
        f"http://127.0.0.1:{port}",
        options=options,
        beep_on_s=0.3,  # of every 0.5 s: long bursts, so a hole inside one is a gap
        tone_hz=180.0,
        harmonics=10,
    )
    await probe.connect()
    try:
        await asyncio.sleep(2.0)  # past the start and the delay's first rise
        before, skip = counts(port), len(probe.received.audio_rms)
        await asyncio.sleep(seconds)
        after, rms = counts(port), np.array(probe.received.audio_rms[skip:])
    finally:
        await probe.close()
    out = {k: after[k] - before[k] for k in after}
    out["received"] = float(len(rms))
    out["silent"] = float(holes(rms))
    return out


def holes(rms: np.ndarray, longest: int = 3) -> int:
    """Frames in runs of 1..``longest`` quiet frames with a loud frame either side."""
    loud = rms > 0.2 * np.percentile(rms, 90) if len(rms) else rms
    quiet = rms < 0.01 * np.percentile(rms, 90) if len(rms) else rms
    count, i = 0, 1
    while i < len(rms):
        if quiet[i] and loud[i - 1]:
            j = i
            while j < len(rms) and quiet[j]:
                j += 1
            if j - i <= longest and j < len(rms) and loud[j]:
                count += j - i
            i = j
        else:
            i += 1
    return count


def hogs(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hog", type=int, nargs="+", default=[0, 1], help="busy processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--voice", default="dsp")
    parser.add_argument("--face", default="passthrough")
    parser.add_argument("--variant-root", type=Path, default=None)
    parser.add_argument("--variant-label", default="variant")
    args = parser.parse_args()
    options: dict[str, object] = {"voice": args.voice, "face": args.face}
    codes = {"this tree": None}
    if args.variant_root is not None:
        codes[args.variant_label] = args.variant_root
    procs = {}
    for index, (label, root) in enumerate(codes.items()):
        procs[label] = (list(PORTS.values())[index], server(list(PORTS.values())[index], root))
    rows: dict[tuple[int, str], list[dict[str, float]]] = {}
    try:
        for hog in args.hog:
            busy = hogs(hog)
            try:
                for run in range(args.repeat):
                    for label, (port, _) in procs.items():
                        r = asyncio.run(one_run(port, options, args.seconds))
                        rows.setdefault((hog, label), []).append(r)
                        print(f"# busy {hog} {label} run {run}: {r}", file=sys.stderr, flush=True)
            finally:
                for p in busy:
                    p.kill()
    finally:
        for _, proc in procs.values():
            proc.terminate()
            proc.wait(10)
    print(f"\nVoice gaps, {args.face} + {args.voice}, {args.seconds:.0f} s a run\n")
    print(
        "| busy processes | code | runs | server: filled / sent (%) | server: dropped late | server: full ring or inbox "
        "| probe: frames in holes / received (%) | per run: filled / in holes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (hog, label), runs in rows.items():
        filled = sum(r["filled"] for r in runs)
        sent = sum(r["sent"] for r in runs)
        silent = sum(r["silent"] for r in runs)
        received = sum(r["received"] for r in runs)
        dropped = sum(r["dropped_late"] for r in runs)
        lost = sum(r["dropped_output"] + r["dropped_input"] for r in runs)
        per = ", ".join(f"{r['filled']:.0f}/{r['silent']:.0f}" for r in runs)
        print(
            f"| {hog} | {label} | {len(runs)} | {filled:.0f} / {sent:.0f} "
            f"({100 * filled / max(sent, 1):.1f}) | {dropped:.0f} | {lost:.0f} "
            f"| {silent:.0f} / {received:.0f} ({100 * silent / max(received, 1):.1f}) | {per} |"
        )
    medians = {k: statistics.median(r["filled"] for r in v) for k, v in rows.items()}
    print(f"\nmedian filled frames a run: {medians}")


if __name__ == "__main__":
    main()
