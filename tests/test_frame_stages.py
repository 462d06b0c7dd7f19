"""bench/frame_stages.py: the page's frames matched to the server's by RTP timestamp."""

from __future__ import annotations

from typing import Any

from bench.frame_stages import Spread, analyse_case, callbacks

SSRC, VIDEO_PT = 1234, 97
ORIGIN = 4_000_000_000  # the sender's random timestamp origin, close to the 32-bit wrap


def _session(shown: set[int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A server trace of 40 frames 50 ms apart, and a page log that saw ``shown`` of them
    5 ms after each was sent, presented all."""
    records: list[list[Any]] = []
    rows: list[list[Any]] = []
    for i in range(40):
        t = 100.0 + 0.05 * i
        pts = 4500 * i
        ts = (ORIGIN + pts) % (1 << 32)
        records.append(["enc", t - 0.004, pts, 900, 1, t - 0.01])
        records.append(["rtp", t, VIDEO_PT, i, ts, 1, SSRC, 900, t])
        records.append(["rtp", t + 0.001, 111, i, 7 * i, 1, 99, 80, t])  # the voice
        if i in shown:
            page_ms = 1000.0 * t + 5.0  # wall_minus_monotonic 0, timeOrigin 0
            rows.append([page_ms + 30, None, page_ms, 0, 0, 0, ts, i + 1])  # presentedFrames
    trace = {"wall_minus_monotonic": 0.0, "records": records}
    case = {"query": "q", "port": 1, "mark": 0.0, "probe": {"avatar": rows, "timeOrigin": 0.0}}
    return case, trace


def test_a_frame_the_page_missed_is_a_gap_on_the_page_only() -> None:
    shown = set(range(40)) - {20}
    case, trace = _session(shown)
    spreads, (lo, hi, ssrc) = analyse_case(case, trace)
    assert ssrc == SSRC
    sent = spreads["all: RTP marker sent"]
    assert isinstance(sent, Spread) and sent.count == 40 and round(sent.max) == 50
    displayed = spreads["displayed: RTP marker sent"]
    assert isinstance(displayed, Spread) and displayed.count == 39 and round(displayed.max) == 100
    encoded = spreads["displayed: encoded"]  # matched through the timestamp origin
    assert isinstance(encoded, Spread) and encoded.count == 39
    page = spreads["page: receiveTime"]
    assert isinstance(page, Spread) and round(page.median) == 50 and round(page.max) == 100
    summary = callbacks(case, lo, hi, 40)
    assert "callbacks 39, frames presented 40" in summary and "1 frames unseen" in summary


def test_spread_counts_gaps_over_150_ms() -> None:
    spread = Spread.of([0.0, 0.05, 0.1, 0.3, 0.35])
    assert spread is not None and spread.gaps == 1 and round(spread.max) == 200
