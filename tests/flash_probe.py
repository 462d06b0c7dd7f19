"""An independent flash/buzz latency measure for a page in Chromium.

The fake camera plays a loop that cuts between two real face frames (A for a
second, then B for a second: a brightness flash as well as a pose change, so an
animated avatar moves too), and the fake microphone a 150 ms voiced buzz once a
second. A script in the page logs every displayed frame of the self view and of
the avatar (requestVideoFrameCallback: its capture/display times and how much it
differs from the previous frame) and the energy of every 128-sample block of the
local microphone and of the returned audio (one AudioWorklet each, one
AudioContext, so both share a sample clock). Python then finds the edges: a
video round trip is the first changed avatar frame's display time minus the
camera cut's capture time, a voice round trip the returned burst's onset minus
the microphone burst's onset. This is edge timing of a synthetic stimulus,
independent of the page's own (correlation) estimate, which it checks.

Used by tests/browser_e2e.py and bench/browser_latency.py.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile

FPS = 30
CUT_S = 1.0  # the camera cuts every second
BURST_S = 0.15
BURST_PERIOD_S = 1.0
RATE = 48000

# Installed with page.evaluate once both videos have a stream; logs into window.__probe.
PROBE_JS = r"""
async () => {
  if (window.__probe) return true;
  const log = { self: [], avatar: [], mic: [], remote: [], rate: 0, timeOrigin: performance.timeOrigin };
  window.__probe = log;
  const watch = (video, out) => {
    const c = document.createElement('canvas'); c.width = 64; c.height = 48;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    let prev = null;
    const step = (now, m) => {
      if (video.videoWidth) {
        ctx.drawImage(video, 0, 0, 64, 48);
        const px = ctx.getImageData(0, 0, 64, 48).data;
        const y = new Float32Array(64 * 48);
        let luma = 0, diff = 0;
        for (let i = 0; i < y.length; i++) {
          y[i] = (px[4 * i] + px[4 * i + 1] + px[4 * i + 2]) / 3;
          luma += y[i];
          if (prev) diff += Math.abs(y[i] - prev[i]);
        }
        prev = y;
        out.push([m.expectedDisplayTime, m.captureTime ?? null, m.receiveTime ?? null,
                  now, luma / y.length, diff / y.length, m.rtpTimestamp ?? null,
                  m.presentedFrames ?? null]);
        if (out.length > 3000) out.splice(0, 1000);
      }
      video.requestVideoFrameCallback(step);
    };
    video.requestVideoFrameCallback(step);
  };
  watch(document.getElementById('self'), log.self);
  watch(document.getElementById('avatar'), log.avatar);
  const code = `registerProcessor('rms', class extends AudioWorkletProcessor {
    process(inputs) {
      const ch = inputs[0][0];
      if (ch) { let s = 0; for (const v of ch) s += v * v;
        this.port.postMessage([currentFrame, Math.sqrt(s / ch.length)]); }
      return true;
    }
  });`;
  const ctx = new AudioContext({ sampleRate: 48000 });
  log.rate = ctx.sampleRate;
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })));
  const sink = ctx.createGain(); sink.gain.value = 0; sink.connect(ctx.destination);
  const tap = (stream, out) => {
    const node = new AudioWorkletNode(ctx, 'rms');
    node.port.onmessage = (e) => {
      out.push([e.data[0], e.data[1], performance.now()]);
      if (out.length > 40000) out.splice(0, 10000);
    };
    ctx.createMediaStreamSource(stream).connect(node);
    node.connect(sink);
  };
  tap(document.getElementById('self').srcObject, log.mic);
  tap(document.getElementById('avatar').srcObject, log.remote);
  await ctx.resume();
  return true;
}
"""


def face_frames() -> tuple[np.ndarray, np.ndarray]:
    """Two 640×480 frames of the talking face in d19.mp4: its first, and the same
    moved 100 px sideways (the warp avatar follows a head move at once, where it
    smooths a turn or a mouth over several frames)."""
    import cv2

    from tests.conftest import MEDIA

    with av.open(str(MEDIA / "d19.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    a = cv2.resize(first, (640, 480), interpolation=cv2.INTER_AREA)
    shift = np.float32([[1, 0, 100], [0, 1, 0]])
    return a, cv2.warpAffine(a, shift, (640, 480), borderMode=cv2.BORDER_REPLICATE)


def write_media(work: Path) -> tuple[Path, Path]:
    """flash.y4m (cuts every CUT_S) and buzz.wav (a burst every BURST_PERIOD_S)."""
    a, b = face_frames()
    video = work / "flash.y4m"
    n = int(FPS * CUT_S)
    with video.open("wb") as f:
        f.write(f"YUV4MPEG2 W640 H480 F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in (a, b):
            yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").to_ndarray(format="yuv420p")
            f.write((b"FRAME\n" + yuv.tobytes()) * n)
    t = np.arange(int(RATE * BURST_PERIOD_S)) / RATE
    pulse = np.zeros_like(t)
    voiced = t < BURST_S
    # A 140 Hz buzz with formant-ish harmonics: speech enough for a voice converter.
    for k, amp in ((1, 1.0), (2, 0.6), (3, 0.5), (5, 0.35), (8, 0.2), (13, 0.1)):
        pulse += amp * np.sin(2 * np.pi * 140 * k * t)
    pulse *= voiced * np.minimum(1.0, np.minimum(t, BURST_S - t) / 0.005).clip(0)
    audio = work / "buzz.wav"
    soundfile.write(audio, (0.25 * pulse / np.abs(pulse).max()).astype(np.float32), RATE)
    return video, audio


@dataclass
class Measure:
    video_ms: list[float]
    audio_ms: list[float]

    @property
    def video(self) -> float | None:
        return statistics.median(self.video_ms) if self.video_ms else None

    @property
    def audio(self) -> float | None:
        return statistics.median(self.audio_ms) if self.audio_ms else None

    @property
    def skew(self) -> float | None:
        if self.video is None or self.audio is None:
            return None
        return self.audio - self.video


def _video_edges(rows: list[list[Any]], use_capture: bool) -> list[float]:
    """Times of frames that differ from the previous one by a cut (≫ the noise)."""
    if len(rows) < 10:
        return []
    diffs = np.array([r[5] for r in rows])
    threshold = max(1.0, 0.3 * float(np.percentile(diffs, 99)))
    edges, last = [], -1e9
    for r in rows:
        t = r[1] if use_capture and r[1] is not None else r[0]
        if r[5] > threshold and t - last > 0.5 * CUT_S * 1000:
            edges.append(t)
            last = t
    return edges


def _audio_onsets(blocks: list[list[float]], rate: float) -> list[tuple[float, float]]:
    """Where the block energy rises from silence: (context time, page time) in ms."""
    if not blocks:
        return []
    rms = np.array([b[1] for b in blocks])
    peak = float(np.percentile(rms, 99))
    if peak <= 0:
        return []
    onsets: list[tuple[float, float]] = []
    last, quiet, start, page_t = -1e9, 0, None, 0.0
    for frame, level, at in blocks:
        t = 1000.0 * frame / rate
        if level < 0.05 * peak:
            quiet, start = quiet + 1, None
            continue
        if quiet >= 8:  # the first block out of a silence: a candidate onset
            start, page_t = t, at
        quiet = 0
        if start is not None and level > 0.25 * peak and t - start < 30:
            if start - last > 0.5 * BURST_PERIOD_S * 1000:
                onsets.append((start, page_t))
                last = start
            start = None
    return onsets


def _pair(local: list[float], remote: list[float], limit_ms: float) -> list[float]:
    """Each local edge with the first remote edge after it (within ``limit_ms``)."""
    out = []
    for t in local:
        later = [r - t for r in remote if 0 < r - t < limit_ms]
        if later:
            out.append(min(later))
    return out


def analyse(
    log: dict[str, Any],
    window: tuple[float, float] | None = None,
    audio_window: tuple[float, float] | None = None,
) -> Measure:
    """Round trips from the page's log; local edges only inside the windows (page time)."""

    def inside(t: float, span: tuple[float, float] | None) -> bool:
        return span is None or span[0] <= t <= span[1]

    local = [t for t in _video_edges(log["self"], use_capture=True) if inside(t, window)]
    remote = _video_edges(log["avatar"], use_capture=False)
    rate = log["rate"] or RATE
    mic = [t for t, at in _audio_onsets(log["mic"], rate) if inside(at, audio_window)]
    back = [t for t, _ in _audio_onsets(log["remote"], rate)]
    return Measure(_pair(local, remote, 0.9 * CUT_S * 1000), _pair(mic, back, 900.0))
