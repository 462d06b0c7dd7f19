"""The face worker's frame-rate gate: the level's rate, each frame taken as it arrives."""

from __future__ import annotations

import numpy as np

from mirage.engine.rategate import EARLY_SHARE, FrameRateGate


def _taken(arrivals: list[float], interval: float) -> list[float]:
    gate = FrameRateGate()
    return [a for a in arrivals if gate.admit(a, interval)]


def test_a_30fps_camera_at_20fps_takes_two_frames_of_three_on_arrival() -> None:
    rng = np.random.default_rng(0)
    arrivals = list(np.arange(300) / 30.0 + rng.uniform(0, 0.004, 300))  # 10 s, jittered
    taken = _taken(arrivals, 1 / 20)
    assert 195 <= len(taken) <= 201  # 20 fps
    gaps = np.diff(taken)
    assert gaps.min() >= EARLY_SHARE / 20  # never faster than the gate allows
    # Each frame is one the camera sent (no waiting for a timer): the gaps are one or two
    # camera intervals, never the 50 ms of a timer that would leave frames waiting.
    assert np.all((np.abs(gaps - 1 / 30) < 0.006) | (np.abs(gaps - 2 / 30) < 0.006))


def test_a_camera_at_or_below_the_level_rate_loses_no_frame() -> None:
    arrivals = [k / 15.0 for k in range(60)]
    assert _taken(arrivals, 1 / 20) == arrivals


def test_after_a_stall_the_gate_gives_no_burst() -> None:
    # 1 s of 30 fps, a 2 s stall, then 1 s of late frames arriving 5 ms apart.
    arrivals = [k / 30 for k in range(30)] + [3.0 + 0.005 * k for k in range(200)]
    taken = _taken(arrivals, 1 / 20)
    after = [a for a in taken if a >= 3.0]
    assert after[0] == 3.0  # the first frame after the stall is taken at once
    assert len(after) <= 21  # the stall earned no credit: 20 fps over the burst
    assert min(np.diff(after)) >= EARLY_SHARE / 20 - 1e-9


def test_a_frame_too_early_is_dropped_and_the_grid_holds() -> None:
    gate = FrameRateGate()
    assert gate.admit(1.0, 0.05)
    assert not gate.admit(1.02, 0.05)  # 30 ms early for a 50 ms step
    assert gate.admit(1.03, 0.05)  # within half a step of its slot (1.05)
    assert gate.next_s == 1.10  # the grid, not the early arrival, sets the next slot
