"""Replay a live session's latencies through the playout clock under other settings.

``bench/browser_latency.py --frame-trace DIR`` records every latency a server's
playout clock was told (``clock`` records: track, capture→ready, inbound). This
replays each session's records, in their order and at their times, through a fresh
``PlayoutClock`` for each setting, and counts what the voice would have suffered:

- **late**: voice blocks ready after their playout time + the wait (``--late-ms``):
  each is a frame of silence sent in its place, a gap in the voice;
- **dropped**: of those, ready past the drop tolerance (30 ms): thrown away;
- **rises**: the playout delay's increases, ms per second: time the voice must
  wait for (jitter for the receiver up to 40 ms; beyond it, silence: **rise gaps**,
  the 20 ms frames of silence a rise puts in the voice);
- **delay**: the playout delay's mean (what lips and voice both wait for).

Same inputs for every setting, so the settings differ by their rule alone (a live
A/B on two shared cores scatters more than they do). The records come from real
sessions, so a rule that only fits one machine's hiccups shows it on another's trace.

    python bench/playout_replay.py DIR/*.json [--audio-window 60 300] [--late-ms 15 30]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mirage.tracks.sync import PlayoutClock  # noqa: E402


class Clock(PlayoutClock):
    """The playout clock with its inbound term generalised for the replay: a quantile
    other than the median, over a window of its own length."""

    def __init__(self, inbound_q: float, inbound_window: dict[str, int | None], **kw: object):
        super().__init__(**kw)  # type: ignore[arg-type]
        self.inbound_q = inbound_q
        self.inbound_window = inbound_window

    def observe(
        self, track: str, latency_s: float, inbound_s: float = 0.0, window: int = 60
    ) -> None:
        keep = self.inbound_window.get(track)
        if keep and track not in self._inbound:
            self._inbound[track] = collections.deque(maxlen=keep)
        super().observe(track, latency_s, inbound_s, window)

    def _need(self, track: str) -> float:
        if self.inbound_q == 0.5:
            return super()._need(track)
        inbound = sorted(self._inbound[track])
        own = sorted(self._own[track])
        return (
            own[min(len(own) - 1, int(0.95 * len(own)))]
            + inbound[min(len(inbound) - 1, int(self.inbound_q * len(inbound)))]
        )


DROP_S = 0.03  # mirage/tracks/audio.py SYNC_TOLERANCE_S
MAX_EARLY_S = 0.04  # mirage/tracks/audio.py: audio due later than this waits behind silence
FRAME_S = 0.02


def sessions(paths: list[Path]) -> dict[str, list[tuple[float, str, float, float]]]:
    """(time, track, latency, inbound) of each playout clock, by file and clock id."""
    out: dict[str, list[tuple[float, str, float, float]]] = collections.defaultdict(list)
    for path in paths:
        for rec in json.loads(path.read_text())["records"]:
            if rec[0] == "clock":
                _, t, clock_id, track, latency, inbound = rec
                out[f"{path.stem}/{clock_id}"].append((t, track, latency, inbound))
    return {k: v for k, v in out.items() if sum(1 for e in v if e[1] == "audio") > 100}


def replay(
    events: list[tuple[float, str, float, float]],
    window: int,
    late_s: float,
    fall: float,
    inbound_q: float = 0.5,
    inbound_s: float | None = None,
) -> dict:
    now = [events[0][0]]
    rates = {
        track: sum(1 for e in events if e[1] == track) / (events[-1][0] - events[0][0])
        for track in ("audio", "video")
    }
    inbound_window = {
        track: None if inbound_s is None else max(1, round(inbound_s * rate))
        for track, rate in rates.items()
    }
    clock = Clock(inbound_q, inbound_window, clock=lambda: now[0], fall_per_s=fall)
    end_from = events[-1][0] - 2.0
    end_delay: list[float] = []
    late = dropped = blocks = 0
    rises = weighted = rise_gaps = 0.0
    last_t = events[0][0]
    for t, track, latency, inbound in events:
        weighted += clock.delay_s * (t - last_t)
        last_t = now[0] = t
        before = clock.delay_s
        audio_window = window if track == "audio" else 60
        clock.observe(track, latency, inbound, audio_window)
        if t >= end_from:
            end_delay.append(clock.delay_s)
        rise = max(0.0, clock.delay_s - before)
        rises += rise
        rise_gaps += max(0.0, rise - MAX_EARLY_S) / FRAME_S
        if track == "audio":
            blocks += 1
            lateness = latency - clock.delay_s  # ready − due (the voice has no lead)
            late += lateness > late_s
            dropped += lateness > DROP_S
    span = events[-1][0] - events[0][0]
    return {
        "late": 100 * late / blocks,
        "dropped": 100 * dropped / blocks,
        "rises": 1000 * rises / span,
        "rise_gaps": rise_gaps / span,
        "delay": 1000 * weighted / span,
        "end_delay": 1000 * sum(end_delay) / max(1, len(end_delay)),
        "span": span,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="+", type=Path)
    parser.add_argument("--audio-window", type=int, nargs="+", default=[60, 300])
    parser.add_argument("--late-ms", type=float, nargs="+", default=[15.0, 30.0])
    parser.add_argument(
        "--fall-ms",
        type=float,
        nargs="+",
        default=[PlayoutClock.fall_per_s * 1000],
        help="how fast the delay may fall, ms per s",
    )
    parser.add_argument(
        "--inbound-q",
        type=float,
        nargs="+",
        default=[0.5],
        help="quantiles of the inbound delay the delay covers",
    )
    parser.add_argument(
        "--inbound-s",
        type=float,
        nargs="+",
        default=[0.0],
        help="seconds of inbound delays kept (0: 5 × the window's blocks, the default)",
    )
    args = parser.parse_args()
    found = sessions(args.traces)
    if not found:
        raise SystemExit("no session with voice in these traces (run with --frame-trace)")
    print(
        "| session | voice window (blocks) | fall (ms/s) | inbound q / s | wait (ms) | late blocks % | dropped % "
        "| delay rises (ms/s) | rise gaps (frames/s) | mean delay (ms) | last 2 s (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, events in sorted(found.items()):
        for window, fall, q, keep, late_ms in itertools.product(
            args.audio_window, args.fall_ms, args.inbound_q, args.inbound_s, args.late_ms
        ):
            r = replay(events, window, late_ms / 1000, fall / 1000, q, keep or None)
            print(
                f"| {name} ({r['span']:.0f} s) | {window} | {fall:.0f} | {q:g} / {keep:g} "
                f"| {late_ms:.0f} "
                f"| {r['late']:.1f} "
                f"| {r['dropped']:.1f} | {r['rises']:.0f} | {r['rise_gaps']:.2f} | {r['delay']:.0f} "
                f"| {r['end_delay']:.0f} |"
            )


if __name__ == "__main__":
    main()
