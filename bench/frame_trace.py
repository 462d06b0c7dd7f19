"""Per-frame server timestamps for bench/browser_latency.py --frame-trace (bench only).

Runs a server (``-m mirage`` or a script such as bench/echo_server.py) with a few
aiortc and Mirage methods wrapped, so every video frame leaves a timestamp at each
stage it passes, and writes them as JSON when the server exits:

    python bench/frame_trace.py OUT.json -m mirage serve --port 8790
    python bench/frame_trace.py OUT.json bench/echo_server.py --port 8791

Stages (``time.monotonic``; nothing of this runs in a normal server):
``pkt``   an inbound video packet reached the jitter buffer (RTP timestamp, seq, bytes);
``jb``    an inbound video frame complete out of the jitter buffer (RTP timestamp, bytes);
``dec``   the decoded frame handed out by aiortc's receiver track (Mirage: the drain;
          the echo: its sender pulling it);
``ready`` Mirage's worker done (the frame's capture and arrival times);
``out``   ``AvatarVideoTrack.recv`` returned to the sender (pts, new or a repeat, its
          capture, the level's frame interval, the playout delay and the video's lead);
``push``  Mirage's output fan-out queued a frame for the sender (pts, older dropped);
``tap``   the sender took it from its tap (pts; start: when it asked);
``enc``   the sender's encoder done (start: when it asked the track, pts, bytes);
``rtp``   each outbound RTP packet handed to DTLS (payload type, timestamp, marker).
``clock`` every latency the playout clock is told (clock id, track, capture→ready,
          inbound), audio blocks included: ``bench/playout_replay.py`` replays them.
The page's ``rtpTimestamp`` (requestVideoFrameCallback) equals the ``rtp`` timestamp,
which matches the page's frames to the server's. Records are kept in memory, bounded.
"""

from __future__ import annotations

import atexit
import collections
import functools
import json
import runpy
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAX_RECORDS = 400_000  # ~20 minutes of one session's packets


class Recorder:
    """Bounded in-memory records, written to ``path`` at exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: collections.deque[list[Any]] = collections.deque(maxlen=MAX_RECORDS)
        # The page's clock is wall time (timeOrigin + now); ours is monotonic.
        self.wall_minus_monotonic = time.time() - time.monotonic()

    def add(self, *fields: Any) -> None:
        self.records.append([fields[0], time.monotonic(), *fields[1:]])

    def write(self) -> None:
        body = {"wall_minus_monotonic": self.wall_minus_monotonic, "records": list(self.records)}
        self.path.write_text(json.dumps(body))


def _wrap_async(cls: type, name: str, after: Callable[..., None]) -> None:
    stock = getattr(cls, name)

    @functools.wraps(stock)
    async def wrapper(self: Any, *args: Any, **kw: Any) -> Any:
        start = time.monotonic()
        result = await stock(self, *args, **kw)
        after(self, result, start, *args)
        return result

    setattr(cls, name, wrapper)


def install(rec: Recorder) -> None:
    """Wrap the stages' methods (see the module docstring)."""
    from aiortc.jitterbuffer import JitterBuffer
    from aiortc.rtcdtlstransport import RTCDtlsTransport
    from aiortc.rtcrtpreceiver import RemoteStreamTrack
    from aiortc.rtcrtpsender import RTCRtpSender

    from mirage.engine.delayline import DelayLine
    from mirage.tracks.fanout import Tap
    from mirage.tracks.video import AvatarVideoTrack, Rendered
    from mirage.webrtc.aiortc_compat import LowLatencyJitterBuffer

    def jitter_add(cls: type, outermost: bool) -> None:
        stock = cls.add

        @functools.wraps(stock)
        def add(self: Any, packet: Any) -> Any:
            pli, frame = stock(self, packet)
            # LowLatencyJitterBuffer calls the stock add: count its frames once.
            if self._is_video and (outermost or type(self) is cls):
                rec.add("pkt", packet.timestamp, packet.sequence_number, len(packet.payload))
                if frame is not None:
                    rec.add("jb", frame.timestamp, len(frame.data))
            return pli, frame

        cls.add = add

    jitter_add(JitterBuffer, False)
    jitter_add(LowLatencyJitterBuffer, True)

    def dec(self: Any, frame: Any, start: float) -> None:
        if self.kind == "video":
            rec.add("dec", frame.pts)

    _wrap_async(RemoteStreamTrack, "recv", dec)

    stock_put = DelayLine.put

    @functools.wraps(stock_put)
    def put(self: Any, item: Any) -> bool:
        if isinstance(item, Rendered):
            rec.add("ready", item.capture, item.arrival, item.ready)
        return stock_put(self, item)

    DelayLine.put = put  # type: ignore[method-assign]

    def out(self: Any, frame: Any, start: float) -> None:
        last = self._last  # the frame's source: new when it is the rendered frame itself
        rec.add(
            "out", frame.pts, frame is last.frame, last.capture, start, self._interval,
            self._clock.delay_s, self._clock.lead("video"),
        )  # fmt: skip

    _wrap_async(AvatarVideoTrack, "recv", out)

    def taken(self: Any, frame: Any, start: float) -> None:
        if self.kind == "video":
            rec.add("tap", frame.pts, start)

    _wrap_async(Tap, "recv", taken)
    stock_push = Tap.push

    @functools.wraps(stock_push)
    def push(self: Any, frame: Any) -> int:
        dropped = stock_push(self, frame)
        if self.kind == "video":
            rec.add("push", frame.pts, dropped)
        return dropped

    Tap.push = push  # type: ignore[method-assign]

    def enc(self: Any, result: Any, start: float, codec: Any) -> None:
        if result is not None and self.kind == "video":
            size = sum(len(p) for p in result.payloads)
            rec.add("enc", result.timestamp, size, len(result.payloads), start)

    _wrap_async(RTCRtpSender, "_next_encoded_frame", enc)

    def rtp(self: Any, result: Any, start: float, data: bytes) -> None:
        if len(data) >= 12 and 96 <= (data[1] & 0x7F) <= 127:  # RTP, not RTCP (RFC 5761)
            seq, ts, ssrc = struct.unpack("!HII", data[2:12])
            rec.add("rtp", data[1] & 0x7F, seq, ts, data[1] >> 7, ssrc, len(data), start)

    _wrap_async(RTCDtlsTransport, "_send_rtp", rtp)

    from mirage.tracks.sync import PlayoutClock

    stock_observe = PlayoutClock.observe

    @functools.wraps(stock_observe)
    def observe(self: Any, track: str, latency_s: float, inbound_s: float = 0.0, *a: Any) -> None:
        rec.add("clock", id(self), track, latency_s, inbound_s)
        stock_observe(self, track, latency_s, inbound_s, *a)

    PlayoutClock.observe = observe  # type: ignore[method-assign]


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    rec = Recorder(Path(sys.argv[1]))
    sys.path.insert(0, str(ROOT))
    install(rec)
    atexit.register(rec.write)
    if sys.argv[2] == "-m":
        sys.argv = [sys.argv[3], *sys.argv[4:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[2:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
