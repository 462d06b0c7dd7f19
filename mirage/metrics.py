"""Every Prometheus metric, on a registry owned by the app (no global registry)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Buckets in seconds: fine below 50 ms where per-frame stages live, coarse above.
_STAGE_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.016,
    0.025,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
)
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.125,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.0,
)


TRACKS = ("video", "audio")
#: The engine's own stages per track (backends add ``animate.<stage>`` as they run).
STAGES = {"video": ("decode", "animate", "convert"), "audio": ("resample", "convert")}
DROP_STAGES = ("input", "output", "late", "fanout")
#: Offer results known up front (any other error class appears on first use).
OFFER_RESULTS = ("ok", "BadOffer", "BadInput", "UnknownBackend", "ServerFull", "ShuttingDown")
QUALITY_DIRECTIONS = ("down", "up")


class Metrics:
    """The server's metrics; ``track`` labels are ``video`` / ``audio``.

    Every labelled series whose label values are known is made at zero here, so an
    idle server's /metrics (and a fresh Grafana dashboard) shows zeros, not "No
    data". Only per-session gauges (``session`` label) wait for a session.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge("mirage_sessions_active", "Sessions open now", registry=r)
        self.sessions_total = Counter("mirage_sessions_total", "Sessions opened", registry=r)
        self.offers_total = Counter(
            "mirage_offers_total", "Offers received, by result", ["result"], registry=r
        )
        self.frames_in = Counter(
            "mirage_frames_in_total", "Frames received from peers", ["track"], registry=r
        )
        self.frames_out = Counter(
            "mirage_frames_out_total", "Frames sent to peers", ["track"], registry=r
        )
        self.frames_dropped = Counter(
            "mirage_frames_dropped_total",
            "Frames dropped to stay at the live edge, by stage",
            ["track", "stage"],
            registry=r,
        )
        self.frames_filled = Counter(
            "mirage_frames_filled_total",
            "Output frames sent without new model output (repeated video, silence/tail audio)",
            ["track"],
            registry=r,
        )
        self.model_errors = Counter(
            "mirage_model_errors_total",
            "Model calls that raised; the frame fell back to pass-through",
            ["track", "backend"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "mirage_stage_seconds",
            "Processing time per stage",
            ["track", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.frame_latency = Histogram(
            "mirage_frame_latency_seconds",
            "Output frame send time minus the capture (arrival) time of its input",
            ["track"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.quality_moves = Counter(
            "mirage_quality_moves_total",
            "Adaptive quality level changes",
            ["direction"],
            registry=r,
        )
        self.quality_level = Gauge(
            "mirage_quality_level",
            "Current quality level per session (0 = full)",
            ["session"],
            registry=r,
        )
        self.av_skew = Gauge(
            "mirage_av_skew_seconds",
            "Per session: how much older the last audio sent was than the last video sent"
            " (capture to send; + = audio later)",
            ["session"],
            registry=r,
        )
        self.playout_delay = Gauge(
            "mirage_playout_delay_seconds",
            "Shared A/V playout delay per session",
            ["session"],
            registry=r,
        )
        self.voice_gate_open = Gauge(
            "mirage_voice_gate_open_ratio",
            "Per session: share of the last 10 s of microphone audio the voice gate let"
            " through to the converter",
            ["session"],
            registry=r,
        )
        self.suppressor_strength = Gauge(
            "mirage_voice_suppressor_strength",
            "Per session: how hard the noise suppressor works, by the microphone's SNR"
            " (1 in full, 0 bypassed on a clean input)",
            ["session"],
            registry=r,
        )
        self.loop_lag = Gauge(
            "mirage_event_loop_lag_seconds",
            "How late the event loop woke a 100 ms timer",
            registry=r,
        )
        self.model_timeouts = Counter(
            "mirage_model_timeouts_total",
            "Model calls abandoned past model_timeout_s (also counted as model errors)",
            ["track", "backend"],
            registry=r,
        )
        self.backend_restarts = Counter(
            "mirage_backend_restarts_total",
            "Backends remade after model_restart_after failures in a row",
            ["track", "backend"],
            registry=r,
        )

        self._zero_known_series()

    def _zero_known_series(self) -> None:
        """Zero series from the start: rate() and dashboards need them before a first event."""
        for result in OFFER_RESULTS:
            self.offers_total.labels(result)
        for direction in QUALITY_DIRECTIONS:
            self.quality_moves.labels(direction)
        for track in TRACKS:
            for counter in (self.frames_in, self.frames_out, self.frames_filled):
                counter.labels(track)
            self.frame_latency.labels(track)
            for stage in DROP_STAGES:
                self.frames_dropped.labels(track, stage)
            for stage in STAGES[track]:
                self.stage_seconds.labels(track, stage)

    def declare_backends(self, track: str, names: Iterable[str]) -> None:
        """Zero error, timeout and restart series for backends ``track`` may run
        (the ones available at start-up, then each session's own)."""
        for name in names:
            for counter in (self.model_errors, self.model_timeouts, self.backend_restarts):
                counter.labels(track, name)

    def render(self) -> bytes:
        return generate_latest(self.registry)
