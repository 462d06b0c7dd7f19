"""Every place we reach into aiortc / aioice internals, with why and when to remove it.

1. ICE host addresses and ports. aioice gathers every interface *except*
   loopback, on random ports, with no option to choose either (aioice #47; the
   port_range PR #112 is unmerged). We replace ``aioice.ice.get_host_addresses``
   once with a function that reads a context variable, and wrap the running
   loop's ``create_datagram_endpoint`` so that a port-0 bind made while a port
   range is set in the context tries the range instead. Contexts without these
   settings keep the stock behaviour. Remove when aioice exposes both.

2. Receive latency. aiortc's ``JitterBuffer`` releases a video frame only when the
   *next* frame's first packet arrives (one frame interval per hop: ~50 ms at
   20 fps) and holds audio for ``prefetch=4`` packets (80 ms). Its receivers
   feed a model that has its own pacing, so we swap in ``LowLatencyJitterBuffer``,
   which releases a video frame on its RTP marker bit when all its packets are
   present and audio packets as soon as they are in order, skipping a lost
   packet after a short wait instead of stalling (aiortc #543, PR #1418).
   aiortc's receiver takes at most one frame per arriving packet, so the frames
   that completed behind a missing packet would leave one per packet after it: a
   standing backlog for the rest of the call (audio, one packet a frame: 40 ms
   after the first lost packet, every later frame flagged late). The buffer
   hands them over with the first (``ReleasedFrames``) and ``BoundedDecodeQueue``
   queues each. Remove when aiortc releases frames on the marker bit.

3. Decode backlog. Encoded frames wait for the decoder thread in an unbounded
   ``queue.Queue``; when the CPU cannot decode in real time the wait grows
   without limit, before any of our own bounded stages sees a frame (aiortc
   #642, #1192). ``BoundedDecodeQueue`` drops the stale backlog: for video it
   then waits for a key frame and asks for one (PLI), so decoding resumes at the
   live edge, never on a corrupt reference. A backlog is frames that have
   *waited* (the oldest ``max_wait_s``), or a hard count: a browser's pacer
   releases the frames it held behind a large one (a cut, a key frame) as one
   burst of 4-5 within a millisecond, which a count of 3 took for a backlog,
   flushed with the large frame in it, and froze the picture 150-250 ms for the
   key frame (issue 15, bench/frame_stages.py).

4. Key frames on every bitrate wobble. aiortc's ``Vp8Encoder`` throws its codec
   away and opens a new one (whose first frame is a key frame, several times a
   delta frame's size) whenever the receiver's REMB moves the target by more than
   10 %. Under loss and retransmission REMB wobbles, so the avatar got a key frame
   every 2 s without a single PLI; each one is a burst of packets that is likelier
   to lose one and that the browser's jitter estimator (which models frame size)
   answers by buffering more. ``SteadyVp8Encoder`` follows a bitrate change at most
   once per ``hold_s``, and a cut below half at once (real congestion). ``install``
   routes aiortc's sender to it. Remove when aiortc reconfigures libvpx in place.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import queue
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aioice.ice
import aiortc.rtcrtpsender
from aiortc import RTCPeerConnection, RTCRtpCodecParameters
from aiortc.codecs.base import Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

_ice_hosts: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "mirage_ice_hosts", default=()
)
_udp_ports: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "mirage_udp_ports", default=None
)
_stock_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    hosts = _ice_hosts.get()
    if not hosts:
        return _stock_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [h for h in hosts if (":" in h and use_ipv6) or (":" not in h and use_ipv4)]


_stock_get_encoder = aiortc.rtcrtpsender.get_encoder


def install() -> None:
    """Route aioice's address lookup through the context variable, and aiortc's
    senders to ``SteadyVp8Encoder`` for VP8 (idempotent)."""
    aioice.ice.get_host_addresses = _get_host_addresses
    aiortc.rtcrtpsender.get_encoder = _get_encoder  # type: ignore[attr-defined]


def _get_encoder(codec: RTCRtpCodecParameters) -> Encoder:
    if codec.mimeType.lower() == "video/vp8":
        return SteadyVp8Encoder()
    return _stock_get_encoder(codec)


class SteadyVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder, but a new target bitrate (REMB) reaches the codec at most
    once per ``hold_s`` (a cut below half of the current target at once); see the
    module docstring."""

    def __init__(self, hold_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._hold_s = hold_s
        self._clock = clock
        self._changed: float | None = None

    @property
    def target_bitrate(self) -> int:
        return _VP8_TARGET.fget(self)  # type: ignore[misc]

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        current = self.target_bitrate
        now = self._clock()
        if abs(bitrate - current) <= 0.1 * current:
            return  # what the codec would ignore anyway
        held = self._changed is not None and now - self._changed < self._hold_s
        if held and bitrate >= current / 2:
            return
        self._changed = now
        _VP8_TARGET.fset(self, bitrate)  # type: ignore[misc]


_VP8_TARGET: property = Vp8Encoder.target_bitrate  # type: ignore[assignment]


def _bind_in_port_range(loop: asyncio.AbstractEventLoop) -> None:
    """Wrap ``loop.create_datagram_endpoint`` once (see the module docstring)."""
    if getattr(loop, "_mirage_port_range", False):
        return
    stock = loop.create_datagram_endpoint

    async def create_datagram_endpoint(factory: Any, local_addr: Any = None, **kw: Any) -> Any:
        ports = _udp_ports.get()
        if ports is None or local_addr is None or local_addr[1] != 0:
            return await stock(factory, local_addr=local_addr, **kw)
        low, high = ports
        span = high - low + 1
        first = random.randrange(span)
        for i in range(span):
            port = low + (first + i) % span
            try:
                return await stock(factory, local_addr=(local_addr[0], port), **kw)
            except OSError:
                continue
        raise OSError(f"no free UDP port in {low}-{high} on {local_addr[0]}")

    loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign,assignment]
    loop._mirage_port_range = True  # type: ignore[attr-defined]


@contextmanager
def ice_hosts(hosts: tuple[str, ...], udp_ports: tuple[int, int] | None = None) -> Iterator[None]:
    """ICE gathering inside this block offers only ``hosts`` (empty: every interface)
    on ports in ``udp_ports`` (None: any port).

    Gathering runs in tasks created inside the block (``setLocalDescription``), which
    inherit the context, so the settings stay with the session that made them.
    """
    install()
    if udp_ports is not None:
        _bind_in_port_range(asyncio.get_running_loop())
    host_token = _ice_hosts.set(tuple(hosts))
    port_token = _udp_ports.set(udp_ports)
    try:
        yield
    finally:
        _udp_ports.reset(port_token)
        _ice_hosts.reset(host_token)


class ReleasedFrames(JitterFrame):
    """A frame, with the complete frames that waited behind it for a missing packet.

    It travels as the first frame (aiortc's receiver maps its RTP timestamp in place);
    ``BoundedDecodeQueue`` queues every frame of it (``unpack``)."""

    def __init__(self, first: JitterFrame, following: list[JitterFrame]) -> None:
        super().__init__(first.data, first.timestamp)
        self.rtp_timestamp = first.timestamp
        self.following = following

    def unpack(self) -> list[JitterFrame]:
        """Each frame, its timestamp mapped as the receiver mapped the first's (RTP
        timestamps wrap at 2³²; the mapped ones do not)."""
        frames = [JitterFrame(self.data, self.timestamp)]
        for frame in self.following:
            ahead = (frame.timestamp - self.rtp_timestamp) % (1 << 32)
            frames.append(JitterFrame(frame.data, self.timestamp + ahead))
        return frames


class LowLatencyJitterBuffer(JitterBuffer):
    """Releases frames as soon as they are complete; see the module docstring.

    ``skip_after``: how many newer frames (video) or packets (audio) may wait behind
    a missing packet before we give up on it, skip to the next frame start and ask
    for a key frame. Small values favour latency; reordering deeper than this is
    treated as loss.
    """

    def __init__(self, capacity: int, is_video: bool, skip_after: int = 3) -> None:
        super().__init__(capacity=capacity, prefetch=0, is_video=is_video)
        self._skip_after = skip_after
        self.last_ssrc: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.last_ssrc = packet.ssrc
        pli, frame = super().add(packet)
        if (
            frame is None
            and self._origin is not None
            and self._packets[self._origin % self._capacity] is None
            and self._skip_gap()
        ):
            pli = pli or self._is_video
            frame = self._remove_frame(packet.sequence_number)
        if frame is not None:
            following: list[JitterFrame] = []
            while (more := self._remove_frame(packet.sequence_number)) is not None:
                following.append(more)
            if following:
                frame = ReleasedFrames(frame, following)
        return pli, frame

    def _slot(self, offset: int) -> RtpPacket | None:
        assert self._origin is not None
        return self._packets[(self._origin + offset) % self._capacity]

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        if self._origin is None:
            return None
        packets: list[RtpPacket] = []
        for count in range(self._capacity):
            packet = self._slot(count)
            if packet is None:
                return None
            if packets and packet.timestamp != packets[0].timestamp:
                # The next frame has begun, so the previous one is whole (stock rule).
                self.remove(count)
                return _frame(packets)
            packets.append(packet)
            if not self._is_video or packet.marker:
                self.remove(count + 1)
                return _frame(packets)
        return None

    def _skip_gap(self) -> bool:
        """Drop the missing head and the rest of its frame once newer data has waited enough."""
        starts: list[int] = []  # offsets of present packets that begin a frame
        previous: RtpPacket | None = None
        for count in range(1, self._capacity):
            packet = self._slot(count)
            if packet is not None and (
                not self._is_video
                or (previous is not None and previous.marker)
                or (previous is not None and previous.timestamp != packet.timestamp)
            ):
                starts.append(count)
            previous = packet
        if len(starts) < self._skip_after:
            return False
        self.remove(starts[0])
        return True


def _frame(packets: list[RtpPacket]) -> JitterFrame:
    data = b"".join(p._data for p in packets)  # type: ignore[attr-defined]
    return JitterFrame(data=data, timestamp=packets[0].timestamp)


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """Whether an encoded VP8 or H.264 frame can be decoded on its own."""
    if not data:
        return False
    if codec_name.upper() == "VP8":
        return data[0] & 0x01 == 0  # frame tag: P bit clear = key frame (RFC 6386 9.1)
    if codec_name.upper() == "H264":
        i = data.find(b"\x00\x00\x01")
        while i != -1 and i + 3 < len(data):
            if data[i + 3] & 0x1F in (5, 7):  # IDR slice or SPS
                return True
            i = data.find(b"\x00\x00\x01", i + 3)
        return False
    return True  # unknown codecs: never hold frames back


class BoundedDecodeQueue(queue.Queue):  # type: ignore[type-arg]
    """The decoder's input queue with a bound; see the module docstring.

    ``put`` runs on the event loop (from ``_handle_rtp_packet``); ``get`` in the
    decoder thread. A new frame flushes the backlog when the oldest waiting one has
    waited ``max_wait_s`` (the decoder is behind) or ``max_pending`` wait (a hard
    bound); a burst that arrived at once is left to the decoder.
    """

    def __init__(
        self,
        is_video: bool,
        max_pending: int,
        on_flush: Callable[[], None],
        max_wait_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._is_video = is_video
        self._max_pending = max_pending
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._on_flush = on_flush
        self._await_key = False
        self.dropped = 0

    # queue.Queue's storage hooks (called under its mutex): each item's enqueue time.
    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self._since: collections.deque[float] = collections.deque()

    def _put(self, item: Any) -> None:
        super()._put(item)
        self._since.append(self._clock())

    def _get(self) -> Any:
        self._since.popleft()
        return super()._get()

    def _behind(self) -> bool:
        with self.mutex:
            if not self.queue:
                return False
            waited = self._clock() - self._since[0]
            return len(self.queue) >= self._max_pending or waited >= self._max_wait_s

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the end-of-stream marker always goes through
            super().put(item)
            return
        codec, frame = item
        if isinstance(frame, ReleasedFrames):
            for each in frame.unpack():
                self.put((codec, each))
            return
        key = self._is_video and is_keyframe(codec.name, frame.data)
        if self._await_key:
            if not key:
                self.dropped += 1
                return
            self._await_key = False
        if self._behind():
            self._flush()
            if self._is_video and not key:
                self._await_key = True
                self.dropped += 1
                self._on_flush()
                return
        super().put(item)

    def _flush(self) -> None:
        with self.mutex:
            kept = [(x, t) for x, t in zip(self.queue, self._since, strict=True) if x is None]
            self.dropped += len(self.queue) - len(kept)
            self.queue.clear()
            self._since.clear()
            for x, t in kept:
                self.queue.append(x)
                self._since.append(t)


def use_low_latency_receivers(
    pc: RTCPeerConnection, max_pending_video: int = 30, max_pending_audio: int = 10
) -> None:
    """Give every receiver of ``pc`` a ``LowLatencyJitterBuffer`` and a
    ``BoundedDecodeQueue`` (call after ``setRemoteDescription``, before media flows)."""
    for receiver in pc.getReceivers():
        kind = receiver.track.kind if receiver.track is not None else None
        if kind not in ("audio", "video"):
            continue
        stock: Any = getattr(receiver, "_RTCRtpReceiver__jitter_buffer")  # noqa: B009
        buffer = LowLatencyJitterBuffer(capacity=stock.capacity, is_video=kind == "video")
        setattr(receiver, "_RTCRtpReceiver__jitter_buffer", buffer)  # noqa: B010
        getattr(receiver, "_RTCRtpReceiver__decoder_queue")  # noqa: B009 - fail loudly if gone

        pending: set[asyncio.Future[None]] = set()

        def ask_key_frame(
            receiver: Any = receiver,
            buffer: LowLatencyJitterBuffer = buffer,
            pending: set[asyncio.Future[None]] = pending,
        ) -> None:
            if buffer.last_ssrc is not None:
                future = asyncio.ensure_future(receiver._send_rtcp_pli(buffer.last_ssrc))
                pending.add(future)
                future.add_done_callback(pending.discard)

        video = kind == "video"
        decode_queue = BoundedDecodeQueue(
            video,
            max_pending_video if video else max_pending_audio,
            ask_key_frame,
            # audio keeps its count's time (20 ms packets): a stall of the decoder
            # thread shorter than that drops no voice
            max_wait_s=0.1 if video else max_pending_audio * 0.02,
        )
        setattr(receiver, "_RTCRtpReceiver__decoder_queue", decode_queue)  # noqa: B010


__all__ = [
    "BoundedDecodeQueue",
    "LowLatencyJitterBuffer",
    "ReleasedFrames",
    "SteadyVp8Encoder",
    "ice_hosts",
    "install",
    "is_keyframe",
    "use_low_latency_receivers",
]
