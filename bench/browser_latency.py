"""Browser round trip: headless Chromium's page against Mirage and a stock aiortc echo.

The fake camera cuts between two face frames every second and the fake mic buzzes
once a second (tests/flash_probe.py writes both); an in-page script times each cut
and burst on the local side and on the returned side. Every case uses the same
page (Mirage's web/app.js; the echo server serves it too), in a private network
namespace that has only loopback, so ``--loss`` can drop UDP with nftables.

    python bench/browser_latency.py [--seconds 10] [--loss 0,3] [--repeat 2] [--only TEXT]

Needs root (unshare -n), Debian chromium and, for a loss above 0, nftables. Prints
two Markdown tables: video round trip, voice round trip and added skew (voice −
video) from the flash/buzz edges, each case relative to the echo in the same run,
the page's own figures and their error against the edges over the page's own span;
then the mean time per video frame in each stage the browser and the server report.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser_e2e import launch, start_and_wait  # noqa: E402
from tests.flash_probe import PROBE_JS, _audio_onsets, analyse, write_media  # noqa: E402

MIRAGE_PORT, ECHO_PORT, VARIANT_PORT = 8790, 8791, 8792
KEYS = (
    "video",
    "audio",
    "skew",
    "page_latency",
    "page_audio",
    "page_skew",
    "page_error_video",
    "page_error_audio",
)
# (label, server, page query)
CASES = [
    ("stock aiortc echo", "echo", "face=passthrough&voice=passthrough"),
    ("mirage passthrough + passthrough", "mirage", "face=passthrough&voice=passthrough"),
    ("mirage passthrough + dsp", "mirage", "face=passthrough&voice=dsp:deep"),
    ("mirage warp + dsp (defaults)", "mirage", "face=warp&voice=dsp:deep"),
]


# Before the page's own script: keep its peer connections, to read their stats.
KEEP_PCS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...args) { const pc = new Native(...args); window.__pcs.push(pc); return pc; };
  window.RTCPeerConnection.prototype = Native.prototype;
})();"""
# The browser's own stage counters, cumulative (the means over the logged span are
# differences of two reads): sums in seconds, each with its count.
BROWSER_STAGES = """async () => {
  const pc = window.__pcs[window.__pcs.length - 1], out = {};
  const put = (key, sum, count) => { if (count) out[key] = [sum, count]; };
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      put('encode', s.totalEncodeTime, s.framesEncoded);
      put('pacer', s.totalPacketSendDelay, s.packetsSent);
    }
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      put('jitter_buffer', s.jitterBufferDelay, s.jitterBufferEmittedCount);
      put('jitter_buffer_target', s.jitterBufferTargetDelay, s.jitterBufferEmittedCount);
      put('jitter_buffer_minimum', s.jitterBufferMinimumDelay, s.jitterBufferEmittedCount);
      put('decode', s.totalDecodeTime, s.framesDecoded);
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      put('audio_jitter_buffer', s.jitterBufferDelay, s.jitterBufferEmittedCount);
      put('audio_jitter_buffer_target', s.jitterBufferTargetDelay, s.jitterBufferEmittedCount);
      put('audio_jitter_buffer_minimum', s.jitterBufferMinimumDelay, s.jitterBufferEmittedCount);
    }
    if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined)
      out.network_rtt = [s.currentRoundTripTime, 1];
  });
  return out;
}"""


def browser_means(before: dict, after: dict) -> dict[str, float]:
    """Mean ms per frame (or sample) of each browser stage between two reads."""
    means = {}
    for key, (total, count) in after.items():
        if key == "network_rtt":  # a current value, not a sum
            means[key] = 1000 * total
            continue
        t0, c0 = before.get(key, (0.0, 0.0))
        if count > c0 and total is not None and t0 is not None:
            means[key] = 1000 * (total - t0) / (count - c0)
    return means


# Loss-recovery counters of the avatar's inbound video (what the browser asked of the
# server and got back) and of the camera's outbound video (what the server asked of it).
RECOVERY = """async () => {
  const pc = window.__pcs[window.__pcs.length - 1], out = {};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      for (const k of ['freezeCount', 'totalFreezesDuration', 'nackCount', 'pliCount', 'firCount',
                       'packetsLost', 'packetsReceived', 'retransmittedPacketsReceived',
                       'keyFramesDecoded', 'framesDropped', 'framesDecoded', 'framesReceived'])
        out['in_' + k] = s[k] ?? null;
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      for (const k of ['totalSamplesReceived', 'concealedSamples', 'silentConcealedSamples',
                       'insertedSamplesForDeceleration', 'removedSamplesForAcceleration'])
        out['in_audio_' + k] = s[k] ?? null;
    }
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      for (const k of ['nackCount', 'pliCount', 'firCount', 'retransmittedPacketsSent', 'keyFramesEncoded'])
        out['out_' + k] = s[k] ?? null;
      out.out_bitrate_target = s.targetBitrate ?? null;
    }
  });
  return out;
}"""


def server_stages(port: int) -> dict[str, tuple[float, float]]:
    """(sum, count) of Mirage's video stage and latency histograms, from /metrics."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return {}
    out: dict[str, list[float]] = {}
    for line in text.decode().splitlines():
        for prefix, key in (
            ("mirage_stage_seconds", 'stage="'),
            ("mirage_frame_latency_seconds", None),
        ):
            audio = 'track="audio"' in line
            if not line.startswith(prefix) or not ('track="video"' in line or audio):
                continue
            if audio and key:  # of the audio only its capture→send
                continue
            name, value = line.rsplit(" ", 1)
            kind = "sum" if name.startswith(prefix + "_sum") else "count"
            if not name.startswith((prefix + "_sum", prefix + "_count")):
                continue
            stage = name.split(key, 1)[1].split('"', 1)[0] if key else "capture_to_send"
            stage = f"audio_{stage}" if audio else stage
            out.setdefault(stage, [0.0, 0.0])[0 if kind == "sum" else 1] += float(value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def server_voice_counts(port: int) -> dict[str, float]:
    """Voice frames the server sent, filled with silence (converter late) and dropped
    as late, from /metrics: what of the voice never reached the wire."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return {}
    wanted = {
        'mirage_frames_out_total{track="audio"}': "voice_frames_out",
        'mirage_frames_filled_total{track="audio"}': "voice_frames_filled",
        'mirage_frames_dropped_total{stage="late",track="audio"}': "voice_frames_dropped_late",
        'mirage_frames_dropped_total{stage="input",track="audio"}': "voice_frames_dropped_input",
    }
    out = {}
    for line in text.decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            out[wanted[name]] = float(value)
    return out


def session_needs(port: int, session_id: str | None) -> dict[str, float]:
    """The playout clock's need per track (p95 own + median inbound, ms) from the
    session's own report, read once at the end of the span."""
    if not session_id:
        return {}
    url = f"http://127.0.0.1:{port}/sessions/{session_id}"
    try:
        body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    except (OSError, ValueError):
        return {}
    needs = body.get("latency_p95_ms") or {}
    return {f"need_{track}": float(ms) for track, ms in needs.items()}


def stage_means(before: dict, after: dict) -> dict[str, float]:
    """Mean ms per frame of each server stage between two /metrics reads."""
    means = {}
    for stage, (total, count) in after.items():
        t0, c0 = before.get(stage, (0.0, 0.0))
        if count > c0:
            means[f"server_{stage}"] = 1000 * (total - t0) / (count - c0)
    return means


def servers(
    variant: dict[str, str], root: Path | None, split_cores: bool, trace: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    # --split-cores: every server on the last core (the browser gets the others, see
    # inside()), as a server and its users' browsers are on different machines.
    pin = ["taskset", "-c", str(max(os.sched_getaffinity(0)))] if split_cores else []

    def python(port: int) -> list[str]:
        """The interpreter, under bench/frame_trace.py (TRACE/PORT.json) with --frame-trace."""
        if trace is None:
            return [*pin, sys.executable]
        return [
            *pin,
            sys.executable,
            str(ROOT / "bench" / "frame_trace.py"),
            f"{trace}/{port}.json",
        ]

    def mirage(port: int) -> list[str]:
        cmd = [*python(port), "-m", "mirage", "serve", "--port", str(port)]
        return [*cmd, "--ice-host", "127.0.0.1", "--log-level", "WARNING"]

    echo = [*python(ECHO_PORT), str(ROOT / "bench" / "echo_server.py"), "--port", str(ECHO_PORT)]
    procs = [
        start_and_wait(mirage(MIRAGE_PORT), f"http://127.0.0.1:{MIRAGE_PORT}/config", cwd=ROOT),
        start_and_wait(echo, f"http://127.0.0.1:{ECHO_PORT}/config", cwd=ROOT),
    ]
    if variant or root is not None:
        env = {**os.environ, **variant}
        if root is not None:  # another checkout's code and page (e.g. `git archive` of main)
            env["PYTHONPATH"] = str(root)
        url = f"http://127.0.0.1:{VARIANT_PORT}/config"
        procs.append(start_and_wait(mirage(VARIANT_PORT), url, cwd=root or ROOT, env=env))
    return procs


def parse_variant(text: str) -> dict[str, str]:
    """``MIRAGE_X=1,MIRAGE_Y=2`` → environment overrides for a second Mirage server."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.startswith("MIRAGE_"):
            raise SystemExit(f"--variant wants MIRAGE_NAME=value pairs, got {part!r}")
        out[key] = value
    return out


def set_loss(percent: int) -> None:
    """Drop ``percent`` % of UDP in this namespace (nftables; none when 0)."""
    if shutil.which("nft") is None:
        if percent > 0:
            raise SystemExit("--loss needs nftables (apt-get install nftables), or use --loss 0")
        return
    subprocess.run(["nft", "flush", "ruleset"], check=True)
    if percent <= 0:
        return
    rules = (
        "add table inet t\n"
        "add chain inet t out { type filter hook output priority 0; }\n"
        f"add rule inet t out meta l4proto udp numgen random mod 100 < {percent} drop\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)


def stalls(log: dict, mark: float) -> dict[str, float]:
    """Stalled seconds of the logged span, from the probe's log (independent of getStats).

    Video: a whole second (bins from ``mark``) in which the self view shows new frames
    and the avatar none, and the longest gap between two avatar frames. Voice: a mic
    burst after which the returned audio stays below a tenth of its usual peak for the
    next 900 ms (the returned stream silent while the input is not)."""
    avatar = sorted(r[0] for r in log["avatar"] if r[0] >= mark)
    own = sorted(r[0] for r in log["self"] if r[0] >= mark)
    end = max(avatar[-1] if avatar else mark, own[-1] if own else mark)
    video = 0
    for k in range(int((end - mark) // 1000)):
        lo, hi = mark + 1000 * k, mark + 1000 * (k + 1)
        if any(lo <= t < hi for t in own) and not any(lo <= t < hi for t in avatar):
            video += 1
    gaps = [b - a for a, b in itertools.pairwise(avatar)]
    rate = log["rate"] or 48000.0
    back = [(1000.0 * b[0] / rate, b[1]) for b in log["remote"]]
    peak = float(np.percentile([lv for _, lv in back], 99)) if back else 0.0
    voice = 0
    for onset, at in _audio_onsets(log["mic"], rate):
        if at < mark:
            continue
        heard = [lv for t, lv in back if onset <= t < onset + 900.0]
        if not heard or max(heard) < 0.1 * peak:
            voice += 1
    return {
        "stalled_video_s": float(video),
        "stalled_voice_s": float(voice),
        "max_frame_gap_ms": max(gaps) if gaps else float("nan"),
    }


def schedstat(pid: int | None) -> tuple[float, float]:
    """(CPU s, run-queue wait s) summed over the threads of process ``pid`` (Linux
    ``/proc/PID/task/*/schedstat``): the wait is time a thread was ready to run and
    had no core, the cost of a machine oversubscribed."""
    run = wait = 0.0
    if pid is None:
        return run, wait
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue
        run, wait = run + int(fields[0]) / 1e9, wait + int(fields[1]) / 1e9
    return run, wait


# The page's own traces and, from the same instant, its figures: measureRoundTrip()
# again on exactly these arrays, so bench/page_estimator.py can replay them offline.
PAGE_TRACE = """() => {
  measureRoundTrip();
  const ring = (r) => r ? Array.from({ length: r.length }, (_, i) => r[(trace.head + i) % r.length]) : null;
  return { stats: window.mirage.stats(), self: trace.self, avatar: trace.avatar,
           mic: ring(trace.mic), back: ring(trace.back), blockMs: trace.blockMs,
           filled: trace.filled };
}"""


def run_case(
    pw: Any,
    media: tuple[Path, Path],
    port: int,
    query: str,
    seconds: float,
    pid: int | None,
    dump: Path | None = None,
) -> dict:
    """One page session: connect, settle, log for ``seconds``, measure."""
    video, audio = media
    browser = launch(pw, video, audio)
    try:
        page = browser.new_page()
        page.add_init_script(KEEP_PCS)
        page.goto(f"http://127.0.0.1:{port}/?autostart=1&{query}")
        page.wait_for_function(
            "() => window.mirage.stats().framesReceived > 20", timeout=90_000, polling=250
        )
        page.evaluate(PROBE_JS)
        time.sleep(2.0)  # let the jitter buffers and the playout delay settle
        mark = page.evaluate("() => performance.now()")
        before = server_stages(port)
        voice_before = server_voice_counts(port)
        sched_before, t_before = schedstat(pid), time.monotonic()
        browser_before = page.evaluate(BROWSER_STAGES)
        counters = page.evaluate(RECOVERY)
        time.sleep(seconds)
        log = page.evaluate("() => window.__probe")
        snapshot = page.evaluate(PAGE_TRACE)
        stats = snapshot["stats"]
        (run1, wait1), span = schedstat(pid), time.monotonic() - t_before
        stages = {
            "server_cpu": 1000 * (run1 - sched_before[0]) / span,
            "server_runq": 1000 * (wait1 - sched_before[1]) / span,
            **browser_means(browser_before, page.evaluate(BROWSER_STAGES)),
            **stage_means(before, server_stages(port)),
            **session_needs(port, stats.get("sessionId")),
        }
        after = page.evaluate(RECOVERY)
        voice_after = server_voice_counts(port)
    finally:
        browser.close()
    measure = analyse(log, (mark, 1e12), (mark, 1e12))
    # The independent check of the page: edges over the very span it correlated.
    match = stats.get("match") or {}
    same = analyse(log, match.get("window"), match.get("audioWindow"))
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        edges = {"video_ms": same.video_ms, "audio_ms": same.audio_ms}
        record = {
            "query": query,
            "port": port,
            "mark": mark,
            "probe": log,
            "page": snapshot,
            "edges": edges,
        }
        name = f"{port}-{query.replace('&', '_').replace('=', '-').replace(':', '-')}"
        index = len(list(dump.glob(f"{name}-*.json")))
        (dump / f"{name}-{index}.json").write_text(json.dumps(record))
    if stats.get("playoutDelayMs") is not None:
        stages["playout_delay"] = stats["playoutDelayMs"]
    report = stats.get("receiverDelayMs") or {}
    for track in ("video", "audio"):
        if report.get(track) is not None:
            stages[f"reported_{track}"] = report[track]
    recovery = {
        k: after[k] - counters[k]
        for k in after
        if isinstance(after.get(k), (int, float)) and isinstance(counters.get(k), (int, float))
    }
    recovery.update(stalls(log, mark))
    recovery.update({k: v - voice_before.get(k, 0.0) for k, v in voice_after.items()})
    shown = [r[0] - r[2] for r in log["avatar"] if r[2] is not None and r[0] >= mark]
    if shown:
        stages["receive_to_display"] = statistics.median(shown)
    return {
        "video": measure.video,
        "audio": measure.audio,
        "skew": measure.skew,
        "n": (len(measure.video_ms), len(measure.audio_ms)),
        "page_latency": stats.get("latencyMs"),
        "page_audio": stats.get("audioRoundTripMs"),
        "page_skew": stats.get("skewMs"),
        "page_error_video": _minus(stats.get("roundTripMs"), same.video),
        "page_error_audio": _minus(stats.get("audioRoundTripMs"), same.audio),
        "stages": stages,
        "recovery": recovery,
    }


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def fmt(value: float | None, unit: str = " ms", digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def ratio(value: float | None, base: float | None) -> str:
    return "–" if value is None or not base else f"{value / base:.2f}×"


def inside(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = Path(tempfile.mkdtemp(prefix="browser-latency-"))
    media = write_media(work)
    variant = parse_variant(args.variant)
    root = Path(args.variant_root).resolve() if args.variant_root else None
    trace = Path(args.frame_trace).resolve() if args.frame_trace else None
    if trace is not None:
        trace.mkdir(parents=True, exist_ok=True)
    procs = servers(variant, root, args.split_cores, trace)
    if args.split_cores:  # Chromium (started below) inherits this process's cores
        cores = os.sched_getaffinity(0)
        if len(cores) < 2:
            raise SystemExit("--split-cores needs at least two cores")
        os.sched_setaffinity(0, cores - {max(cores)})
    pids = dict(zip((MIRAGE_PORT, ECHO_PORT, VARIANT_PORT), (p.pid for p in procs), strict=False))
    cases = [
        (label, ECHO_PORT if server == "echo" else MIRAGE_PORT, q) for label, server, q in CASES
    ]
    if variant or root is not None:  # each Mirage case again on the variant, right after
        named = " ".join(f"{k.removeprefix('MIRAGE_').lower()}={v}" for k, v in variant.items())
        named = " ".join(filter(None, [named, args.variant_label]))
        cases = [
            c
            for label, port, q in cases
            for c in [(label, port, q)]
            + ([(f"{label} [{named}]", VARIANT_PORT, q)] if port == MIRAGE_PORT else [])
        ]
    rows: list[tuple[int, str, dict]] = []
    dump = Path(args.dump).resolve() if args.dump else None
    try:
        with sync_playwright() as pw:
            for loss in args.loss:
                set_loss(loss)
                # Round-robin: each repeat runs every case once, so a load that drifts
                # during the run (a shared machine) hits every case alike.
                by_case: dict[str, list[dict]] = {label: [] for label, _, _ in cases}
                for _ in range(args.repeat):
                    for label, port, query in cases:
                        got = run_case(pw, media, port, query, args.seconds, pids.get(port), dump)
                        by_case[label].append(got)
                for label, _, _ in cases:
                    runs = by_case[label]
                    merged = {k: _median([r[k] for r in runs]) for k in KEYS}
                    merged["n"] = tuple(sum(r["n"][i] for r in runs) for i in (0, 1))
                    names = {k for r in runs for k in r["stages"]}
                    merged["stages"] = {
                        k: _median([r["stages"].get(k) for r in runs]) for k in sorted(names)
                    }
                    # Stalls and recovery counters add up over the runs (median of the gap).
                    keys = {k for r in runs for k in r["recovery"]}
                    merged["recovery"] = {
                        k: _total(k, [r["recovery"].get(k) for r in runs]) for k in sorted(keys)
                    }
                    rows.append((loss, label, merged))
                    each = [(r["video"], r["audio"]) for r in runs]
                    print(f"# {loss}% {label}: runs {each} {json.dumps(merged)}", file=sys.stderr)
    finally:
        set_loss(0)
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    print_table(rows)
    print_stages(rows)
    print_recovery(rows)


def _total(key: str, values: list[Any]) -> float | None:
    present = [v for v in values if v is not None and v == v]
    if not present:
        return None
    return max(present) if key == "max_frame_gap_ms" else sum(present)


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def print_table(rows: list[tuple[int, str, dict]]) -> None:
    print(
        "| UDP loss | case | video round trip | voice round trip | added skew "
        "| × echo (video / voice) | page: latency / voice / skew "
        "| page − edges, same span (video / voice) | edges (video, voice) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    echo: dict[int, dict] = {loss: r for loss, label, r in rows if label.startswith("stock")}
    for loss, label, r in rows:
        base = echo.get(loss, {})
        print(
            f"| {loss} % | {label} | {fmt(r['video'])} | {fmt(r['audio'])} | {fmt(r['skew'])} "
            f"| {ratio(r['video'], base.get('video'))} / {ratio(r['audio'], base.get('audio'))} "
            f"| {fmt(r['page_latency'])} / {fmt(r['page_audio'])} / {fmt(r['page_skew'])} "
            f"| {fmt(r['page_error_video'])} / {fmt(r['page_error_audio'])} "
            f"| {r['n'][0]}, {r['n'][1]} |"
        )


STAGES = [
    ("server_cpu", "server process CPU (ms per s, all threads; /proc schedstat)"),
    ("server_runq", "server threads' run-queue wait (ms per s: ready, no core free)"),
    ("encode", "browser encode"),
    ("pacer", "browser pacer"),
    ("network_rtt", "network RTT"),
    ("server_queue", "server inbox wait (arrival→worker)"),
    ("server_decode", "server to_ndarray"),
    ("server_animate", "server animate"),
    ("server_convert", "server from_ndarray"),
    ("server_held", "server held ready→send (delay line)"),
    ("server_capture_to_send", "server capture→send"),
    ("need_video", "playout clock's need, video (p95 own + median inbound)"),
    ("need_audio", "playout clock's need, voice (p95 own + median inbound)"),
    ("playout_delay", "of which the playout delay (lips held to the voice)"),
    ("server_audio_capture_to_send", "server capture→send, voice"),
    ("reported_video", "page's report: its video receive→display (ms)"),
    ("reported_audio", "page's report: its audio jitter buffer + output (ms)"),
    ("jitter_buffer", "browser jitter buffer"),
    ("jitter_buffer_target", "browser jitter buffer target"),
    ("jitter_buffer_minimum", "browser jitter buffer minimum (its lip sync's hold)"),
    ("decode", "browser decode"),
    ("receive_to_display", "browser receive→display"),
    ("audio_jitter_buffer", "browser audio jitter buffer (per sample)"),
    ("audio_jitter_buffer_target", "browser audio jitter buffer target"),
    ("audio_jitter_buffer_minimum", "browser audio jitter buffer minimum (its lip sync's hold)"),
]


def print_per_case(
    title: str, field: str, rows_spec: list, rows: list[tuple[int, str, dict]]
) -> None:
    """One Markdown table: a row per (key, label, digits) of ``rows_spec``, a column per case."""
    print()
    print(f"| {title} | " + " | ".join(f"{lbl} ({loss} %)" for loss, lbl, _ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for key, label, digits in rows_spec:
        cells = [fmt(r[field].get(key), "", digits) for _, _, r in rows]
        print(f"| {label} | " + " | ".join(cells) + " |")


def print_stages(rows: list[tuple[int, str, dict]]) -> None:
    """Mean ms per video frame in each stage we can see, one column per case."""
    spec = [(key, label, 1) for key, label in STAGES]
    print_per_case("video stage (ms per frame)", "stages", spec, rows)


RECOVERY_ROWS = [
    ("stalled_video_s", "stalled seconds, video (no new avatar frame; probe log)", 0),
    ("stalled_voice_s", "stalled seconds, voice (a burst sent, none back; probe log)", 0),
    ("max_frame_gap_ms", "longest gap between avatar frames (ms; probe log)", 0),
    ("in_freezeCount", "avatar freezes (getStats freezeCount)", 0),
    ("in_totalFreezesDuration", "avatar frozen (s; getStats totalFreezesDuration)", 2),
    ("in_packetsLost", "avatar packets lost", 0),
    ("in_nackCount", "NACKs the browser sent for the avatar", 0),
    ("in_retransmittedPacketsReceived", "retransmissions received (RTX)", 0),
    ("in_pliCount", "PLIs the browser sent for the avatar", 0),
    ("in_keyFramesDecoded", "avatar key frames decoded", 0),
    ("in_framesDropped", "avatar frames dropped by the browser", 0),
    ("in_framesReceived", "avatar frames received (getStats)", 0),
    ("in_framesDecoded", "avatar frames decoded (getStats)", 0),
    ("voice_frames_out", "voice frames the server sent (20 ms)", 0),
    ("voice_frames_filled", "of them silence: the converter late (server)", 0),
    ("voice_frames_dropped_late", "voice frames dropped as late (server)", 0),
    ("voice_frames_dropped_input", "mic frames dropped from a full inbox (server)", 0),
    ("in_audio_totalSamplesReceived", "voice samples the browser received", 0),
    ("in_audio_concealedSamples", "of them concealed by the browser", 0),
    ("in_audio_insertedSamplesForDeceleration", "inserted to slow down (browser NetEq)", 0),
    ("in_audio_removedSamplesForAcceleration", "removed to catch up (browser NetEq)", 0),
    ("out_nackCount", "NACKs the server sent for the camera", 0),
    ("out_pliCount", "PLIs the server sent for the camera", 0),
    ("out_retransmittedPacketsSent", "camera retransmissions sent", 0),
]


def print_recovery(rows: list[tuple[int, str, dict]]) -> None:
    """Stalls and loss recovery over the logged span (sums over the repeats)."""
    print_per_case("over the logged span (all runs)", "recovery", RECOVERY_ROWS, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="logged seconds per case")
    parser.add_argument("--loss", default="0,3", help="UDP loss percentages, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (median)")
    parser.add_argument(
        "--only",
        default="",
        help="run only cases whose label contains one of these (comma-separated)",
    )
    parser.add_argument(
        "--variant",
        default="",
        help="MIRAGE_X=v,...: run each Mirage case again on a second server with these settings",
    )
    parser.add_argument(
        "--variant-root",
        default="",
        help="the second server's code and page from this checkout (e.g. `git archive` of main)",
    )
    parser.add_argument("--variant-label", default="", help="how the tables name the variant")
    parser.add_argument(
        "--split-cores",
        action="store_true",
        help="the servers on the last core, Chromium on the others (as on separate machines)",
    )
    parser.add_argument(
        "--dump",
        default="",
        help="DIR: write each case's probe log, page traces, page figures and edges (JSON)",
    )
    parser.add_argument(
        "--frame-trace",
        default="",
        help="DIR: run the servers under bench/frame_trace.py (per-frame stage times, "
        "DIR/PORT.json at exit); with --dump, bench/frame_stages.py matches them to the page",
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.loss = [int(x) for x in args.loss.split(",") if x.strip()]
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        CASES[:] = [c for c in CASES if any(w in c[0] for w in wanted)]
    if args.inside:
        inside(args)
        return
    # A private network namespace: only loopback, and nftables rules of its own.
    cmd = ["unshare", "-n", sys.executable, __file__, "--inside", *sys.argv[1:]]
    print(f"<!-- uptime: {os.getloadavg()} -->", flush=True)
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
