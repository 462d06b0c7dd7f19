"""A Python mirror of the page's own round-trip estimator (web/app.js, "numbers").

The page correlates self-view motion with avatar motion, and microphone loudness with
the returned loudness. This file does the same arithmetic on traces that
``bench/browser_latency.py --dump DIR`` took from a real browser, so that the
estimator can be changed and checked offline against the flash/buzz edges of the
same run before web/app.js is changed to match.

    python bench/page_estimator.py DIR [DIR ...]

Prints, per dumped case: the page's figure, this mirror's with the rule before issue
15 item 5 ("old") and with web/app.js's now ("new": it must equal the page's), and
the edges' median over the page's span. ``Settings`` holds the options tried and not
kept (motion onsets, the lobe-only median for the video), to try again on idle traces.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_LAG_MS = 1000.0


@dataclass(frozen=True)
class Settings:
    """How the page estimates: the defaults are what web/app.js does."""

    width_ms: float = 20.0  # the video correlation's triangle kernel, ± this
    step_ms: float = 2.0  # the video lag bins
    onsets: bool = False  # video: correlate where motion starts (positive first difference)
    video_lobe: bool = False  # video: the median over the peak's lobe, not all bins ≥ lobe × peak
    lobe: float = 0.1  # weighted median over the bins above this × peak
    audio_from_ms: float = -200.0  # the voice lag search starts here
    video_needed: float = 3.0  # peak / mean |correlation| below this: no figure
    audio_needed: float = 0.3  # correlation coefficient below this: no figure


def onsets(trace: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Each frame's rise in change over the frame before: a ramp of motion over several
    frames counts where it starts, a one-frame spike as the spike."""
    out = []
    for (_, before), (t, now) in itertools.pairwise(trace):
        out.append((t, max(0.0, now - before)))
    return out


def peak_of(
    bins: np.ndarray, step: float, first: float, s: Settings, lobe: bool = True
) -> float | None:
    """The lag the correlation points at: the weighted median of its positive mass
    ≥ ``s.lobe`` × its peak at lag ≥ 0; with ``lobe``, over the peak's contiguous
    lobe only (the voice's rule), else over every such bin (the video's)."""
    i0 = max(0, round(-first / step))  # the peak among lags ≥ 0, its lobe anywhere
    k = i0 + int(np.argmax(bins[i0:]))
    if k == i0 and i0 > 0 and bins[i0 - 1] > bins[k]:
        return None  # the correlation still rises below 0: no lag it can stand behind
    floor = s.lobe * bins[k]
    lo, hi = (k, k) if lobe else (0, len(bins) - 1)
    while lobe and lo > 0 and bins[lo - 1] >= floor:
        lo -= 1
    while lobe and hi < len(bins) - 1 and bins[hi + 1] >= floor:
        hi += 1
    mass = np.where(bins[lo : hi + 1] >= floor, bins[lo : hi + 1], 0.0)
    run = np.cumsum(mass)
    i = int(np.searchsorted(run, run[-1] / 2))
    return first + (lo + i) * step


def peak_of_all(bins: np.ndarray, step: float, first: float, fraction: float = 0.1) -> float:
    """The old rule: the weighted median of every bin ≥ ``fraction`` × peak."""
    k = int(np.argmax(bins))
    mass = np.where(bins >= fraction * bins[k], bins, 0.0)
    run = np.cumsum(mass)
    return first + int(np.searchsorted(run, run[-1] / 2)) * step


def video_lag(
    early: list[tuple[float, float]], later: list[tuple[float, float]], s: Settings, old: bool
) -> tuple[float | None, float]:
    """(lag ms or None, match) from the two motion traces, as lagOf in web/app.js."""
    if len(early) < 30 or len(later) < 30:
        return None, 0.0
    t0, t1 = max(early[0][0], later[0][0]), later[-1][0] - MAX_LAG_MS
    if not old and s.onsets:
        early, later = onsets(early), onsets(later)
    a = [(t, v) for t, v in early if t0 <= t <= t1]
    b = [(t, v) for t, v in later if t >= t0]
    if len(a) < 30 or t1 - t0 < 2000:
        return None, 0.0
    ma, mb = np.mean([v for _, v in a]), np.mean([v for _, v in b])
    width, step = s.width_ms, s.step_ms
    bins = np.zeros(int(MAX_LAG_MS // step) + 1)
    ks = np.arange(len(bins)) * step
    tb, vb = np.array([t for t, _ in b]), np.array([v for _, v in b]) - mb
    for ta, va in a:
        d = tb - ta
        near = (d >= -width) & (d <= MAX_LAG_MS + width)
        for dj, vj in zip(d[near], vb[near], strict=True):
            tri = 1 - np.abs(dj - ks) / width
            bins += np.where(tri > 0, (va - ma) * vj * tri, 0.0)
    peak, spread = bins.max(), np.abs(bins).mean()
    match = peak / spread if spread > 0 else 0.0
    if not match >= s.video_needed:
        return None, match
    if old:
        return peak_of_all(bins, step, 0.0), match
    return peak_of(bins, step, 0.0, s, lobe=s.video_lobe), match


def audio_lag(
    mic: list[float], back: list[float], block_ms: float, s: Settings, old: bool
) -> tuple[float | None, float]:
    """(lag ms or None, match) from the two loudness rings (oldest first), as audioLag."""
    a_all, b = np.asarray(mic, float), np.asarray(back, float)
    n = len(b)
    max_lag = int(MAX_LAG_MS // block_ms)
    neg = 0 if old else int(-s.audio_from_ms // block_ms)
    m = n - max_lag
    a = a_all[neg:m]
    ma, mb = a.mean(), b.mean()
    lags = range(-neg, max_lag + 1)
    bins = np.array([np.dot(a - ma, b[neg + k : m + k] - mb) for k in lags])
    ea = np.sum((a - ma) ** 2)
    eb = np.sum((b[neg + max_lag : m + max_lag] - mb) ** 2)
    r = bins.max() / np.sqrt(ea * eb) if ea * eb > 0 else 0.0
    if not r >= s.audio_needed:
        return None, float(r)
    first = -neg * block_ms
    lag = peak_of_all(bins, block_ms, first) if old else peak_of(bins, block_ms, first, s)
    return lag, float(r)


def replay(record: dict, s: Settings, old: bool) -> tuple[float | None, float | None]:
    page = record["page"]
    video, _ = video_lag(
        [tuple(p) for p in page["self"]], [tuple(p) for p in page["avatar"]], s, old
    )
    audio = None
    if page["mic"] and page["filled"] >= len(page["mic"]):
        audio, _ = audio_lag(page["mic"], page["back"], page["blockMs"], s, old)
    return video, audio


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args()
    s = Settings()
    print("| case | edges video / voice | page | old mirror | new mirror | new − edges |")
    print("|---|---|---|---|---|---|")
    for d in args.dirs:
        for path in sorted(d.glob("*.json")):
            rec = json.loads(path.read_text())
            ev = statistics.median(rec["edges"]["video_ms"]) if rec["edges"]["video_ms"] else None
            ea = statistics.median(rec["edges"]["audio_ms"]) if rec["edges"]["audio_ms"] else None
            st = rec["page"]["stats"]
            ov, oa = replay(rec, s, old=True)
            nv, na = replay(rec, s, old=False)
            err = [None if x is None or e is None else x - e for x, e in ((nv, ev), (na, ea))]
            print(
                f"| {path.stem} | {_fmt(ev)} / {_fmt(ea)} "
                f"| {_fmt(st['roundTripMs'])} / {_fmt(st['audioRoundTripMs'])} "
                f"| {_fmt(ov)} / {_fmt(oa)} | {_fmt(nv)} / {_fmt(na)} "
                f"| {_fmt(err[0])} / {_fmt(err[1])} |"
            )


if __name__ == "__main__":
    main()
