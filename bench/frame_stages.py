"""Where do the avatar's frames bunch? Server stage times against the page's, per frame.

Reads a bench/browser_latency.py run made with ``--dump DUMP --frame-trace TRACE``:
each case's page log (requestVideoFrameCallback rows of the avatar, with their
``rtpTimestamp``) and the server's stage records (bench/frame_trace.py). Matches the
page's frames to the server's by RTP timestamp, and prints, per case and stage, the
inter-frame interval distribution of

* every frame that passed the stage in the page's logged span ("all"), and
* the frames the page displayed, at each stage they passed ("displayed"),

so the first stage where the intervals go uneven is the one to blame.

    python bench/frame_stages.py DUMP TRACE
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GAP_MS = 150.0
WRAP = 1 << 32


@dataclass
class Spread:
    """Inter-frame intervals (ms) of one stage."""

    count: int
    fps: float
    median: float
    p95: float
    max: float
    gaps: int  # intervals over GAP_MS

    @classmethod
    def of(cls, times_s: list[float]) -> Spread | None:
        t = np.sort(np.asarray(times_s, dtype=float)) * 1000.0
        if len(t) < 3:
            return None
        d = np.diff(t)
        fps = 1000.0 * (len(t) - 1) / (t[-1] - t[0])
        return cls(
            len(t), fps, float(np.median(d)), float(np.percentile(d, 95)), float(d.max()),
            int((d > GAP_MS).sum()),
        )  # fmt: skip

    def row(self, label: str) -> str:
        return (
            f"| {label} | {self.count} | {self.fps:.1f} | {self.median:.1f} | {self.p95:.1f} "
            f"| {self.max:.0f} | {self.gaps} |"
        )


def _mode_offset(pairs: list[tuple[int, int]]) -> int | None:
    """The most common (a − b) mod 2^32: the constant a timestamp origin adds."""
    counts = collections.Counter((a - b) % WRAP for a, b in pairs)
    return counts.most_common(1)[0][0] if counts else None


def analyse_case(
    case: dict[str, Any], trace: dict[str, Any]
) -> tuple[dict[str, Spread | None], tuple[float, float, int]]:
    """Stage → Spread, "all" and "displayed" (see the module docstring), and the
    span of the page's frames' sends (server monotonic s) and the avatar's SSRC."""
    probe = case["probe"]
    mark = case.get("mark", float("-inf"))
    rows = [r for r in probe["avatar"] if r[0] >= mark and len(r) > 6 and r[6] is not None]
    origin_ms = probe["timeOrigin"]
    offset = trace["wall_minus_monotonic"]

    def server_s(page_ms: float) -> float:  # page performance.now() → our monotonic
        return (origin_ms + page_ms) / 1000.0 - offset

    by: dict[str, list[list[Any]]] = collections.defaultdict(list)
    for r in trace["records"]:
        by[r[0]].append(r)
    shown = {int(r[6]) for r in rows}
    # The avatar's sender: the SSRC whose marker packets carry the page's timestamps.
    ssrcs = collections.Counter(p[6] for p in by["rtp"] if p[5] and p[4] in shown)
    if not ssrcs:
        return {}, (0.0, 0.0, 0)
    ssrc = ssrcs.most_common(1)[0][0]
    sent = {p[4]: p[1] for p in by["rtp"] if p[6] == ssrc and p[5]}  # rtp ts → marker send
    matched = [sent[ts] for ts in shown if ts in sent]
    lo, hi = min(matched), max(matched)
    # Upstream stages of a frame come earlier than its send: widen the window back.
    lo_up = lo - 0.5

    def within(kind: str, start: float = lo_up, index: int = 1) -> list[list[Any]]:
        return [r for r in by[kind] if start <= r[index] <= hi]

    out: dict[str, Spread | None] = {}
    out["all: jitter buffer out (inbound frame complete)"] = Spread.of([r[1] for r in within("jb")])
    out["all: decoded (aiortc receiver track)"] = Spread.of([r[1] for r in within("dec")])
    if by["ready"]:
        out["all: worker done"] = Spread.of([r[1] for r in within("ready")])
        out["all: recv() returned, new frames"] = Spread.of([r[1] for r in within("out") if r[3]])
        out["all: recv() returned, with repeats"] = Spread.of([r[1] for r in within("out")])
    if by["tap"]:
        out["all: sender took it from its tap"] = Spread.of([r[1] for r in within("tap")])
    out["all: encoded"] = Spread.of([r[1] for r in within("enc")])
    out["all: RTP marker sent"] = Spread.of([t for t in sent.values() if lo <= t <= hi])
    out["page: receiveTime"] = Spread.of([server_s(r[2]) for r in rows if r[2] is not None])
    out["page: expectedDisplayTime"] = Spread.of([server_s(r[0]) for r in rows])
    # The displayed frames, stage by stage (by timestamp: rtp → encoder pts → recv's
    # pts → its capture → the worker's record and its arrival).
    encs = [r for r in by["enc"] if lo_up <= r[1] <= hi]
    enc_origin = _mode_offset(
        [(p[4], e[2]) for e, p in zip(encs, _next_markers(encs, by["rtp"], ssrc), strict=True) if p]
    )
    if enc_origin is not None:
        enc_at = {(e[2] + enc_origin) % WRAP: e for e in encs}
        disp = [enc_at[ts] for ts in shown if ts in enc_at]
        out["displayed: encoded"] = Spread.of([e[1] for e in disp])
        out["displayed: sender asked recv()"] = Spread.of([e[5] for e in disp])
        if by["out"]:
            outs = {r[2]: r for r in by["out"] if lo_up <= r[1] <= hi}
            # The encoder's timestamp is the pts in 1/90000 s, rounded down or up.
            chain = [outs[k] for e in disp if (k := _near(outs, e[2])) is not None]
            out["displayed: recv() returned"] = Spread.of([r[1] for r in chain])
            readies = {r[2]: r for r in by["ready"]}
            ready = [readies[r[4]] for r in chain if r[3] and r[4] in readies]
            out["displayed: worker done"] = Spread.of([r[1] for r in ready])
            out["displayed: arrival (drain)"] = Spread.of([r[3] for r in ready])
    out["displayed: RTP marker sent"] = Spread.of(matched)
    return out, (lo, hi, ssrc)


def _near(table: dict[int, Any], key: int) -> int | None:
    """``key`` or a neighbour (±1) that ``table`` has."""
    return next((k for k in (key, key + 1, key - 1) if k in table), None)


def drops(trace: dict[str, Any], lo: float, hi: float) -> dict[str, int]:
    """Frames Mirage dropped between its stages in [lo, hi] (server monotonic s)."""
    recs = [r for r in trace["records"] if lo <= r[1] <= hi]
    return {
        "decoded": sum(r[0] == "dec" for r in recs),
        "worker done (the rest: rate gate, slot)": sum(r[0] == "ready" for r in recs),
        "recv() new": sum(r[0] == "out" and r[3] for r in recs),
        "recv() repeats": sum(r[0] == "out" and not r[3] for r in recs),
        "dropped in the sender's tap": sum(r[3] for r in recs if r[0] == "push"),
        "encoded": sum(r[0] == "enc" for r in recs),
    }


def _next_markers(
    encs: list[list[Any]], packets: list[list[Any]], ssrc: int
) -> list[list[Any] | None]:
    """For each encoded frame, the first marker packet of ``ssrc`` sent after it."""
    markers = [p for p in packets if p[6] == ssrc and p[5]]
    times = np.array([p[1] for p in markers])
    found: list[list[Any] | None] = []
    for e in encs:
        i = int(np.searchsorted(times, e[1]))
        found.append(markers[i] if i < len(markers) else None)
    return found


def one_way(case: dict[str, Any], trace: dict[str, Any]) -> tuple[float, float] | None:
    """Median and p95 of RTP marker sent → page receiveTime (ms, wall clocks)."""
    probe = case["probe"]
    rows = [r for r in probe["avatar"] if len(r) > 6 and r[6] is not None and r[2] is not None]
    sent = {p[4]: p[1] for p in trace["records"] if p[0] == "rtp" and p[5]}
    lags = [
        probe["timeOrigin"] + r[2] - 1000.0 * (sent[r[6]] + trace["wall_minus_monotonic"])
        for r in rows
        if r[6] in sent
    ]
    if not lags:
        return None
    return float(np.median(lags)), float(np.percentile(lags, 95))


def callbacks(case: dict[str, Any], lo_s: float, hi_s: float, sent: int) -> str:
    """How many frames the page presented (rVFC ``presentedFrames``) against how many
    callbacks it ran (rows) and the server sent, over the logged span: a callback the
    busy main thread misses is a gap in every rVFC trace, not on the screen."""
    rows = [r for r in case["probe"]["avatar"] if r[0] >= case.get("mark", float("-inf"))]
    presented = [r[7] for r in rows if len(r) > 7 and r[7] is not None]
    if len(presented) < 2:
        return f"page callbacks {len(rows)}, server sent {sent} (no presentedFrames)"
    jumps = collections.Counter(int(b - a) for a, b in itertools.pairwise(presented))
    missed = sum((k - 1) * n for k, n in jumps.items() if k > 1)
    return (
        f"page callbacks {len(presented)}, frames presented {presented[-1] - presented[0] + 1} "
        f"(callbacks that skipped presented frames: {sum(n for k, n in jumps.items() if k > 1)}, "
        f"{missed} frames unseen), server sent {sent}"
    )


def edge_gaps(case: dict[str, Any], with_time: bool = False) -> list[tuple[Any, ...]]:
    """For each flash edge frame (self view and avatar): the display-time gap to the
    callback before it and the frames presented in between (1: the edge is exact; more:
    the change may have come in an unseen frame, up to the gap earlier); ``with_time``
    adds the edge's own time (page ms)."""
    from tests.flash_probe import _video_edges

    out: list[tuple[Any, ...]] = []
    for side, use_capture in (("self", True), ("avatar", False)):
        rows = case["probe"][side]
        times = [r[1] if use_capture and r[1] is not None else r[0] for r in rows]
        index = {t: i for i, t in enumerate(times)}
        for t in _video_edges(rows, use_capture):
            i = index[t]
            if i == 0 or rows[i][0] < case.get("mark", float("-inf")):
                continue
            prev, cur = rows[i - 1], rows[i]
            jump = None
            if len(cur) > 7 and cur[7] is not None and prev[7] is not None:
                jump = int(cur[7] - prev[7])
            row = (side, times[i] - times[i - 1], jump)
            out.append((*row, t) if with_time else row)
    return out


def edge_round_trips(case: dict[str, Any]) -> list[tuple[float, bool]]:
    """Each flash edge's video round trip (bench/browser_latency.py's pairing: a self
    view cut with the avatar's first cut after it) and whether it is exact: neither
    edge frame's callback came after presented frames it never saw."""
    edges = edge_gaps(case, with_time=True)
    local = [(t, j == 1) for side, _, j, t in edges if side == "self"]
    remote = [(t, j == 1) for side, _, j, t in edges if side == "avatar"]
    out = []
    for t, exact in local:
        later = [(r - t, ok) for r, ok in remote if 0 < r - t < 900.0]
        if later:
            lag, ok = min(later)
            out.append((lag, exact and ok))
    return out


def edge_parts(case: dict[str, Any], trace: dict[str, Any]) -> list[dict[str, float]]:
    """Each video round trip split where the server saw its avatar frame (Mirage only):
    self-view capture → the source camera frame complete in the server's jitter buffer
    (the uplink, plus a camera interval when the rate gate dropped the cut frame itself,
    plus any avatar frames the page's callbacks missed) → decoded (the drain) → the
    RTP marker sent → the page's receiveTime → its display time (ms)."""
    probe, offset = case["probe"], trace["wall_minus_monotonic"]
    by: dict[str, list[list[Any]]] = collections.defaultdict(list)
    for r in trace["records"]:
        by[r[0]].append(r)
    if not by["out"]:
        return []
    encs = by["enc"]
    rtp = {p[4]: p for p in by["rtp"] if p[5]}
    pairs = [
        (p[4], e[2]) for e, p in zip(encs, _next_markers_all(encs, by["rtp"]), strict=True) if p
    ]
    origin = _mode_offset(pairs)
    outs = {r[2]: r for r in by["out"]}
    # aiortc's decoded pts is the inbound RTP timestamp less the stream's first one.
    decs = np.array([r[1] for r in by["dec"]])
    jb_origin = _mode_offset(
        [
            (j[2], by["dec"][i][2])
            for j in by["jb"]
            if (i := int(np.searchsorted(decs, j[1]))) < len(decs)
        ]
    )
    readies = {r[2]: r for r in by["ready"]}
    rows = {int(r[6]): r for r in probe["avatar"] if len(r) > 6 and r[6] is not None}
    by_display = {r[0]: r for r in probe["avatar"]}
    edges = edge_gaps(case, with_time=True)
    local = [t for side, _, _, t in edges if side == "self"]
    remote = [t for side, _, _, t in edges if side == "avatar"]
    parts = []
    for t in local:
        later = [r for r in remote if 0 < r - t < 900.0]
        if not later or origin is None:
            continue
        row = by_display.get(min(later))
        if row is None or len(row) < 7 or row[6] is None or int(row[6]) not in rows:
            continue
        pts = (int(row[6]) - origin) % WRAP
        key = _near(outs, pts)
        sent = rtp.get(int(row[6]))
        if key is None or sent is None or not outs[key][3] or outs[key][4] not in readies:
            continue
        arrival = readies[outs[key][4]][3]
        complete, first, size = _complete(by, arrival, jb_origin)
        wall = 1000.0 * offset  # our monotonic → the page's clock (ms)
        page = probe["timeOrigin"]
        parts.append(
            {
                "round trip": row[0] - t,
                "capture → first packet in": 1000.0 * first + wall - page - t,
                "first → last packet in": 1000.0 * (complete - first),
                "inbound frame (kB)": size / 1000.0,
                "complete → decoded (drain)": 1000.0 * (arrival - complete),
                "arrival → RTP sent": 1000.0 * (sent[1] - arrival),
                "sent → page receive": row[2] + page - wall - 1000.0 * sent[1],
                "receive → display": row[0] - row[2],
            }
        )
    return parts


def _complete(
    by: dict[str, list[list[Any]]], arrival: float, origin: int | None
) -> tuple[float, float, float]:
    """When the inbound frame the drain got at ``arrival`` left the jitter buffer, when
    its first packet came in, and its size (bytes)."""
    nan = float("nan")
    dec = min(by["dec"], key=lambda r: abs(r[1] - arrival))
    if origin is None:
        return nan, nan, nan
    ts = (dec[2] + origin) % WRAP
    done = next((j for j in by["jb"] if j[2] == ts), None)
    first = next((p[1] for p in by["pkt"] if p[2] == ts), nan)
    if done is None:
        return nan, first, nan
    return done[1], first, float(done[3]) if len(done) > 3 else nan


def _next_markers_all(encs: list[list[Any]], packets: list[list[Any]]) -> list[list[Any] | None]:
    """``_next_markers`` for the video SSRC that carries most marker packets after encodes."""
    ssrcs = collections.Counter(p[6] for p in packets if p[5] and p[2] != 111)
    if not ssrcs:
        return [None] * len(encs)
    best = max(ssrcs, key=lambda s: sum(1 for p in packets if p[6] == s and p[5] and p[7] > 0))
    return _next_markers(encs, packets, best)


def inbound_lag(trace: dict[str, Any], lo: float, hi: float) -> tuple[float, float, float] | None:
    """The camera's frames' delay to us beyond the fastest one's (ms: median, p95, max),
    from each frame's first packet against its RTP timestamp (the browser stamps capture
    time at 90 kHz): the uplink's jitter (its encoder, pacer and the network), per frame."""
    first: dict[int, float] = {}
    for r in trace["records"]:
        if r[0] == "pkt" and lo - 0.5 <= r[1] <= hi:
            first.setdefault(r[2], r[1])
    if len(first) < 3:
        return None
    ts = np.array(sorted(first), dtype=float)
    t = np.array([first[int(k)] for k in ts])
    ts = np.unwrap(ts * (2 * np.pi / WRAP)) * (WRAP / (2 * np.pi))  # 32-bit wrap
    lag = 1000.0 * (t - (ts - ts[0]) / 90000.0)
    lag -= lag.min()
    return float(np.median(lag)), float(np.percentile(lag, 95)), float(lag.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dump")
    parser.add_argument("trace")
    args = parser.parse_args()
    traces: dict[int, dict[str, Any]] = {}
    for path in sorted(Path(args.dump).glob("*.json")):
        case = json.loads(path.read_text())
        port = int(case["port"])
        if port not in traces:
            file = Path(args.trace) / f"{port}.json"
            if not file.exists():
                print(f"no trace for {path.name}", file=sys.stderr)
                continue
            traces[port] = json.loads(file.read_text())
        spreads, (lo, hi, ssrc) = analyse_case(case, traces[port])
        print(f"\n{path.name} ({case['query']})\n")
        print("| stage | frames | fps | median interval | p95 | max | gaps > 150 ms |")
        print("|---|---|---|---|---|---|---|")
        for label, spread in spreads.items():
            if spread is not None:
                print(spread.row(label))
        counts = drops(traces[port], lo, hi)
        print("\nframes in the span: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        sent = sum(
            1
            for r in traces[port]["records"]
            if r[0] == "rtp" and r[5] and r[6] == ssrc and lo <= r[1] <= hi
        )
        print("\n" + callbacks(case, lo, hi, sent))
        for side in ("self", "avatar"):
            gaps = [(g, j) for s, g, j in edge_gaps(case) if s == side]
            cells = ", ".join(f"{g:.0f}" + (f"/{j}" if j is not None else "") for g, j in gaps)
            print(f"{side} edges: gap to the callback before (ms)/frames presented: {cells}")
        trips = edge_round_trips(case)
        exact = [lag for lag, ok in trips if ok]
        if trips:
            print(
                f"video round trip from the edges: all {np.median([x for x, _ in trips]):.0f} ms "
                f"({len(trips)}, spread {min(x for x, _ in trips):.0f}–"
                f"{max(x for x, _ in trips):.0f}); exact edges only "
                + (
                    f"{np.median(exact):.0f} ms ({len(exact)}, {min(exact):.0f}–{max(exact):.0f})"
                    if exact
                    else "none"
                )
            )
        parts = edge_parts(case, traces[port])
        if parts:
            print("\n| edge | " + " | ".join(parts[0]) + " |")
            print("|---|" + "---|" * len(parts[0]))
            for i, part in enumerate(parts):
                print(f"| {i + 1} | " + " | ".join(f"{v:.0f}" for v in part.values()) + " |")
        up = inbound_lag(traces[port], lo, hi)
        if up is not None:
            print(
                f"\ncamera frames' first packet, delay beyond the fastest frame's: median "
                f"{up[0]:.0f} ms, p95 {up[1]:.0f}, max {up[2]:.0f}"
            )
        lag = one_way(case, traces[port])
        if lag is not None:
            print(f"\nRTP sent → page receiveTime: median {lag[0]:.1f} ms, p95 {lag[1]:.1f} ms")


if __name__ == "__main__":
    main()
