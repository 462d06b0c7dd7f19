"""The real-browser run: Mirage + headless Chromium inside a network namespace with
only loopback. Run by tests/test_browser.py as

    unshare -n python -m tests.browser_e2e WORKDIR

WORKDIR holds face.y4m and speech.wav; the flash/buzz media of the round-trip
phase (tests/flash_probe.py), results.json, frames and a screenshot are written there.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

PORT = 8765
URL = f"http://127.0.0.1:{PORT}"
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
GRAB = """() => {
  const v = document.getElementById('avatar');
  if (!v.videoWidth) return null;
  const c = document.createElement('canvas'); c.width = 256; c.height = 256;
  c.getContext('2d').drawImage(v, 0, 0, 256, 256);
  return c.toDataURL('image/png');
}"""


def launch(pw: Any, video: Path, audio: Path) -> Any:
    """Debian's Chromium, headless, its fake camera and mic playing these files."""
    return pw.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *FLAGS,
            f"--use-file-for-fake-video-capture={video}",
            f"--use-file-for-fake-audio-capture={audio}",
        ],
    )


def start_and_wait(
    cmd: list[str], url: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process and wait (up to 60 s) until ``url`` answers."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env)
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start")


def start_server(face: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mirage", "serve", "--port", str(PORT)]
    cmd += ["--ice-host", "127.0.0.1", "--face", face, "--log-level", "WARNING"]
    return start_and_wait(cmd, f"{URL}/health")


def wait_for(page: Any, condition: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.evaluate(condition)
        if value:
            return value
        time.sleep(0.25)
    return page.evaluate(condition)


# Playwright launches each browser with a fresh, empty profile of its own.


def run_face_phase(pw: Any, work: Path, out: dict[str, Any]) -> None:
    """Default backends, a real talking face and real speech."""
    browser = launch(pw, work / "face.y4m", work / "speech.wav")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.on("console", lambda m: out["console"].append(m.text))
    page.goto(f"{URL}/?autostart=1")
    out["connected"] = bool(wait_for(page, "() => window.mirage.stats().framesReceived > 40", 90))
    frames = []
    for i in range(16):
        data = page.evaluate(GRAB)
        if data:
            path = work / f"avatar-{i:02d}.png"
            path.write_bytes(base64.b64decode(data.split(",", 1)[1]))
            frames.append(path.name)
        time.sleep(0.25)
    out["frames"] = frames
    time.sleep(1.5)  # let the overlay refresh
    out["stats"] = page.evaluate("() => window.mirage.stats()")
    out["status"] = page.evaluate("() => document.getElementById('status').textContent")
    out["overlay"] = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#overlay dd')]"
        ".map(d => [d.id, d.textContent]))"
    )
    page.screenshot(path=str(work / "browser.png"), full_page=True)
    page.set_input_files(
        "#ref-file", files=[{"name": "x.png", "mimeType": "image/png", "buffer": b"not an image"}]
    )
    out["upload_error"] = wait_for(
        page,
        "() => { const t = document.getElementById('ref-status').textContent;"
        " return t.includes('rejected') ? t : null; }",
        20,
    )
    browser.close()


def run_round_trip_phase(pw: Any, work: Path, out: dict[str, Any], servers: list[Any]) -> None:
    """Identity transforms, a camera that cuts and a mic that buzzes once a second:
    the page's own round trip beside the flash/buzz edges timed in the same page."""
    from tests.flash_probe import PROBE_JS, analyse, write_media

    video, audio = write_media(work)
    browser = launch(pw, video, audio)
    page = browser.new_page()
    page.goto(f"{URL}/?autostart=1&face=passthrough&voice=passthrough")
    wait_for(page, "() => window.mirage.stats().framesReceived > 20", 60)
    page.evaluate(PROBE_JS)
    # The page's figures come from its last 8 s; the probe has logged for longer.
    time.sleep(11.0)
    stats = page.evaluate("() => window.mirage.stats()")
    log = page.evaluate("() => window.__probe")
    (work / "probe.json").write_text(json.dumps(log))  # to look into a failure
    # The edges of the very span the page correlated (its windows, in page time).
    match = stats.get("match") or {}
    measure = analyse(log, match.get("window"), match.get("audioWindow"))
    out["round_trip"] = {
        "page": {
            k: stats.get(k)
            for k in (
                "roundTripMs",
                "audioRoundTripMs",
                "skewMs",
                "latencyMs",
                "receiverDelayMs",
                "videoLeadMs",
            )
        },
        "edges": {"video_ms": measure.video_ms, "audio_ms": measure.audio_ms},
        "self_frame_ms": [b[0] - a[0] for a, b in zip(log["self"], log["self"][1:], strict=False)],
    }
    # A network drop: the server goes away, the page says so, and it comes back.
    servers[0].kill()
    servers[0].wait(10)
    out["drop_status"] = wait_for(
        page,
        "() => { const t = document.getElementById('status').textContent;"
        " return /Reconnect|interrupted|lost|unreachable/.test(t) ? t : null; }",
        40,
    )
    servers[0] = start_server("passthrough")
    out["reconnected"] = bool(
        wait_for(
            page,
            "() => { const s = window.mirage.stats();"
            " return s.connection === 'connected' && s.framesReceived > 20; }",
            60,
        )
    )
    browser.close()


def main() -> None:
    from playwright.sync_api import sync_playwright

    work = Path(sys.argv[1])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    interfaces = [line.split(":")[1].strip().split("@")[0] for line in links.stdout.splitlines()]
    out: dict[str, Any] = {"console": [], "interfaces": interfaces}
    servers = [start_server("warp")]
    try:
        with sync_playwright() as pw:
            run_face_phase(pw, work, out)
            run_round_trip_phase(pw, work, out, servers)
    finally:
        servers[0].terminate()
        servers[0].wait(10)
        (work / "results.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
