"""Browser round trip: headless Chromium's page against Mirage and a stock aiortc echo.

The fake camera cuts between two face frames every second and the fake mic buzzes
once a second (tests/flash_probe.py writes both); an in-page script times each cut
and burst on the local side and on the returned side. Every case uses the same
page (Mirage's web/app.js; the echo server serves it too), in a private network
namespace that has only loopback, so ``--loss`` can drop UDP with nftables.

    python bench/browser_latency.py [--seconds 12] [--loss 0,3] [--repeat 1]

Prints a Markdown table: video round trip, voice round trip and added skew
(voice − video) from the flash/buzz edges, the page's own figures beside them,
and each case relative to the echo in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.flash_probe import PROBE_JS, analyse, write_media  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
MIRAGE_PORT, ECHO_PORT = 8790, 8791
KEYS = ("video", "audio", "skew", "page_latency", "page_audio", "page_skew")
# (label, server, page query)
CASES = [
    ("stock aiortc echo", "echo", "face=passthrough&voice=passthrough"),
    ("mirage passthrough + passthrough", "mirage", "face=passthrough&voice=passthrough"),
    ("mirage passthrough + dsp", "mirage", "face=passthrough&voice=dsp:deep"),
    ("mirage warp + dsp (defaults)", "mirage", "face=warp&voice=dsp:deep"),
]


def start(cmd: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=ROOT)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start")


def servers() -> list[subprocess.Popen[bytes]]:
    mirage = [sys.executable, "-m", "mirage", "serve", "--port", str(MIRAGE_PORT)]
    mirage += ["--ice-host", "127.0.0.1", "--log-level", "WARNING"]
    echo = [sys.executable, str(ROOT / "bench" / "echo_server.py"), "--port", str(ECHO_PORT)]
    return [start(mirage, MIRAGE_PORT), start(echo, ECHO_PORT)]


def set_loss(percent: int) -> None:
    subprocess.run(["nft", "flush", "ruleset"], check=True)
    if percent <= 0:
        return
    rules = (
        "add table inet t\n"
        "add chain inet t out { type filter hook output priority 0; }\n"
        f"add rule inet t out meta l4proto udp numgen random mod 100 < {percent} drop\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)


def run_case(pw: Any, media: tuple[Path, Path], port: int, query: str, seconds: float) -> dict:
    """One page session: connect, settle, log for ``seconds``, measure."""
    video, audio = media
    browser = pw.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *FLAGS,
            f"--use-file-for-fake-video-capture={video}",
            f"--use-file-for-fake-audio-capture={audio}",
        ],
    )
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/?autostart=1&{query}")
        page.wait_for_function(
            "() => window.mirage.stats().framesReceived > 20", timeout=90_000, polling=250
        )
        page.evaluate(PROBE_JS)
        time.sleep(2.0)  # let the jitter buffers and the playout delay settle
        mark = page.evaluate("() => performance.now()")
        time.sleep(seconds)
        log = page.evaluate("() => window.__probe")
        stats = page.evaluate("() => window.mirage.stats()")
    finally:
        browser.close()
    if os.environ.get("BROWSER_LATENCY_DUMP"):
        Path(os.environ["BROWSER_LATENCY_DUMP"]).write_text(json.dumps(log))
    measure = analyse(log, (mark, 1e12), (mark, 1e12))
    return {
        "video": measure.video,
        "audio": measure.audio,
        "skew": measure.skew,
        "n": (len(measure.video_ms), len(measure.audio_ms)),
        "page_latency": stats.get("latencyMs"),
        "page_audio": stats.get("audioRoundTripMs"),
        "page_skew": stats.get("skewMs"),
        "match": stats.get("match"),
    }


def fmt(value: float | None, unit: str = " ms") -> str:
    return "–" if value is None else f"{value:.0f}{unit}"


def ratio(value: float | None, base: float | None) -> str:
    return "–" if value is None or not base else f"{value / base:.2f}×"


def inside(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = Path(tempfile.mkdtemp(prefix="browser-latency-"))
    media = write_media(work)
    procs = servers()
    rows: list[tuple[int, str, dict]] = []
    try:
        with sync_playwright() as pw:
            for loss in args.loss:
                set_loss(loss)
                for label, server, query in CASES:
                    port = MIRAGE_PORT if server == "mirage" else ECHO_PORT
                    runs = [
                        run_case(pw, media, port, query, args.seconds) for _ in range(args.repeat)
                    ]
                    merged = {k: _median([r[k] for r in runs]) for k in KEYS}
                    merged["n"] = tuple(sum(r["n"][i] for r in runs) for i in (0, 1))
                    rows.append((loss, label, merged))
                    print(f"# {loss}% {label}: {json.dumps(merged)}", file=sys.stderr, flush=True)
    finally:
        set_loss(0)
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    print_table(rows)


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def print_table(rows: list[tuple[int, str, dict]]) -> None:
    print(
        "| UDP loss | case | video round trip | voice round trip | added skew "
        "| × echo (video / voice) | page: latency / voice / skew | edges (video, voice) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    echo: dict[int, dict] = {loss: r for loss, label, r in rows if label.startswith("stock")}
    for loss, label, r in rows:
        base = echo.get(loss, {})
        print(
            f"| {loss} % | {label} | {fmt(r['video'])} | {fmt(r['audio'])} | {fmt(r['skew'])} "
            f"| {ratio(r['video'], base.get('video'))} / {ratio(r['audio'], base.get('audio'))} "
            f"| {fmt(r['page_latency'])} / {fmt(r['page_audio'])} / {fmt(r['page_skew'])} "
            f"| {r['n'][0]}, {r['n'][1]} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="logged seconds per case")
    parser.add_argument("--loss", default="0,3", help="UDP loss percentages, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (median)")
    parser.add_argument("--only", default="", help="run only cases whose label contains this")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.loss = [int(x) for x in args.loss.split(",") if x.strip()]
    if args.only:
        CASES[:] = [c for c in CASES if args.only in c[0]]
    if args.inside:
        inside(args)
        return
    # A private network namespace: only loopback, and nftables rules of its own.
    cmd = ["unshare", "-n", sys.executable, __file__, "--inside", *sys.argv[1:]]
    print(f"<!-- uptime: {os.getloadavg()} -->", flush=True)
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
