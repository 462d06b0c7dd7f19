"""Bounded fan-out of one media stream: the client's joint between sources, peer
connections and sinks.

A ``Hub`` is the fan-out the server's outputs use too (``tracks/fanout.py``), fed
frames by a file reader, a drained device track or a drained remote track
(``pump``), handing each to every subscriber: taps that a peer connection or the user
reads, and listeners (sinks). Nothing in it grows: a video tap keeps only the newest frame, an audio one
at most ``max_audio_ms`` (oldest dropped, counted). Audio is resampled to 48 kHz if
need be. The hub restamps every frame on one ``Timeline`` shared by a client's audio
and video, so timestamps stay monotonic and in step across reconnections, file
loops and sources that restart their own clocks.
"""

from __future__ import annotations

import collections
import fractions
import time

import av
from av import AudioFrame, VideoFrame

from mirage.tracks.fanout import FanOut, Frame, TapBound

VIDEO_RATE = 90000
AUDIO_RATE = 48000
GAP_S = 0.1  # audio this far behind the wall clock, for this long, jumps forward (a gap)
AHEAD_S = 0.1  # audio this far ahead of the wall clock is dropped (a sender running early)


class Timeline:
    """One wall-clock origin for a client's audio and video timestamps."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.start


class RateMeter:
    """Events per second over the last ``window_s``."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def tick(self) -> None:
        now = time.monotonic()
        self._times.append(now)
        while self._times[0] < now - self._window_s:
            self._times.popleft()

    def rate(self) -> float:
        now = time.monotonic()
        while self._times and self._times[0] < now - self._window_s:
            self._times.popleft()
        return len(self._times) / self._window_s


class Hub(FanOut):
    """One stream (``kind``) → bounded subscriber tracks and listener callbacks,
    restamped on the client's ``Timeline`` (``tracks/fanout.py`` does the fan-out)."""

    def __init__(self, kind: str, timeline: Timeline, max_audio_ms: float = 200.0) -> None:
        super().__init__(kind, TapBound(audio_ms=max_audio_ms))
        self.timeline = timeline
        self._samples: int | None = None  # audio: the next frame's timestamp
        self._behind_since: int | None = None  # audio: wall time (samples) it fell behind
        self._last_pts = -1
        self.dropped_ahead = 0  # audio frames dropped for running ahead of the wall clock
        self._resampler: av.AudioResampler | None = None
        self.meter = RateMeter()

    def push(self, frame: Frame) -> None:
        if isinstance(frame, AudioFrame) and frame.sample_rate != AUDIO_RATE:
            if self._resampler is None:  # any source: the client's audio runs at 48 kHz
                self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
            frame.pts = None  # the hub restamps; the resampler must not rebase
            for out in self._resampler.resample(frame):
                self._deliver(out)
            return
        self._deliver(frame)

    def _deliver(self, frame: Frame) -> None:
        if not self._restamp(frame):
            self.dropped_ahead += 1
            return
        self.meter.tick()
        super().push(frame)

    def _restamp(self, frame: Frame) -> bool:
        """Stamp ``frame`` on the timeline; False for audio to drop (see ``_audio_pts``)."""
        if isinstance(frame, VideoFrame):
            pts = max(self._last_pts + 1, round(self.timeline.now() * VIDEO_RATE))
            frame.time_base = fractions.Fraction(1, VIDEO_RATE)
        else:
            audio_pts = self._audio_pts(round(self.timeline.now() * AUDIO_RATE), frame.samples)
            if audio_pts is None:
                return False
            pts = audio_pts
            frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        frame.pts = pts
        self._last_pts = pts
        return True

    def _audio_pts(self, wall: int, samples: int) -> int | None:
        """Audio is stamped back to back, so a burst after a stall (the stall's own
        audio, arriving late) fills the stall instead of running ahead of the wall
        clock. Only audio that stays behind for ``GAP_S`` of wall time, audio that
        never came (a reconnection), jumps forward to the wall clock. Audio more than
        ``AHEAD_S`` ahead of it is dropped (None): the server's voice leaves early as
        its playout delay falls, which a browser's jitter buffer time-compresses, and
        sinks that play samples back to back (a recording, a virtual microphone) would
        drift out of step with the video by it."""
        gap = GAP_S * AUDIO_RATE
        if self._samples is not None and self._samples - wall > AHEAD_S * AUDIO_RATE:
            return None
        if self._samples is None:
            self._samples = max(0, wall - samples)
        elif wall - self._samples <= gap:
            self._behind_since = None
        elif self._behind_since is None:
            self._behind_since = wall
        elif wall - self._behind_since > gap:
            self._samples, self._behind_since = wall - samples, None
        pts = self._samples
        self._samples += samples
        return pts
