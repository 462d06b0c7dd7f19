"""Our aiortc workarounds: still attached to the internals they patch, and correct."""

from __future__ import annotations

import fractions

import aioice.ice
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from mirage.client.probe import SyntheticCamera
from mirage.webrtc import aiortc_compat
from mirage.webrtc.aiortc_compat import LowLatencyJitterBuffer


def packet(seq: int, ts: int, marker: bool = False, data: bytes = b"x") -> RtpPacket:
    p = RtpPacket(sequence_number=seq, timestamp=ts, marker=int(marker))
    p._data = data  # type: ignore[attr-defined]
    return p


def test_video_frame_released_on_marker_without_waiting_for_the_next() -> None:
    jb = LowLatencyJitterBuffer(capacity=128, is_video=True)
    assert jb.add(packet(1, 3000, data=b"a")) == (False, None)
    pli, frame = jb.add(packet(2, 3000, marker=True, data=b"b"))
    assert frame is not None and frame.data == b"ab" and frame.timestamp == 3000 and not pli


def test_video_reordered_packets_still_make_whole_frames() -> None:
    jb = LowLatencyJitterBuffer(capacity=128, is_video=True)
    assert jb.add(packet(10, 100, data=b"a"))[1] is None
    assert jb.add(packet(12, 100, marker=True, data=b"c"))[1] is None  # 11 missing: wait
    frame = jb.add(packet(11, 100, data=b"b"))[1]
    assert frame is not None and frame.data == b"abc"


def test_video_lost_packet_is_skipped_with_a_key_frame_request() -> None:
    jb = LowLatencyJitterBuffer(capacity=128, is_video=True, skip_after=2)
    jb.add(packet(1, 100, marker=True))  # frame 100 out
    jb.add(packet(3, 200, marker=True))  # seq 2 (start of frame 200) lost
    jb.add(packet(4, 300, marker=True))
    pli, frame = jb.add(packet(5, 400, marker=True))
    assert pli, "a lost packet must ask for a key frame"
    assert frame is not None and frame.timestamp == 300  # resumed at a whole frame


def test_audio_packets_released_at_once_and_losses_skipped() -> None:
    jb = LowLatencyJitterBuffer(capacity=16, is_video=False, skip_after=2)
    assert jb.add(packet(1, 960))[1] is not None
    assert jb.add(packet(3, 2880))[1] is None  # 2 missing: wait a little
    pli, frame = jb.add(packet(4, 3840))
    assert frame is not None and frame.timestamp == 2880 and not pli


def test_audio_frames_behind_a_lost_packet_leave_with_the_skip_not_one_per_packet() -> None:
    """aiortc's receiver takes one frame per packet: frames left waiting behind a gap
    would stay a standing backlog (two frames, 40 ms, for the rest of the call)."""
    jb = LowLatencyJitterBuffer(capacity=16, is_video=False, skip_after=3)
    released: list[int] = []
    for seq in range(1, 13):
        if seq == 4:
            continue  # lost
        frame = jb.add(packet(seq, seq * 960))[1]
        if isinstance(frame, aiortc_compat.ReleasedFrames):
            released += [f.timestamp // 960 for f in frame.unpack()]
        elif frame is not None:
            released.append(frame.timestamp // 960)
        if seq == 7:  # three packets waited behind the gap: all of them leave now
            assert released == [1, 2, 3, 5, 6, 7]
        if seq > 7:  # and every later packet leaves on its own arrival
            assert released[-1] == seq
    assert released == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12]


def test_audio_packets_reordered_leave_together_when_the_late_one_arrives() -> None:
    jb = LowLatencyJitterBuffer(capacity=16, is_video=False, skip_after=3)
    assert jb.add(packet(1, 960))[1] is not None
    assert jb.add(packet(3, 2880))[1] is None  # 2 is late, not lost
    frame = jb.add(packet(2, 1920))[1]
    assert isinstance(frame, aiortc_compat.ReleasedFrames)
    assert [f.timestamp for f in frame.unpack()] == [1920, 2880]
    frame = jb.add(packet(4, 3840))[1]  # and the next leaves on its own arrival
    assert frame is not None and frame.timestamp == 3840


def test_decode_queue_queues_every_released_frame_with_the_receivers_timestamps() -> None:
    from mirage.webrtc.aiortc_compat import BoundedDecodeQueue, ReleasedFrames

    q = BoundedDecodeQueue(is_video=False, max_pending=10, on_flush=lambda: None)
    top = (1 << 32) - 960
    first = JitterFrame(b"a", top)  # the RTP timestamps wrap behind the first
    batch = ReleasedFrames(first, [JitterFrame(b"b", 0), JitterFrame(b"c", 960)])
    batch.timestamp = 48000  # what aiortc's TimestampMapper made of the first
    opus = _Codec("opus")
    q.put((opus, batch))
    got = [q.get_nowait()[1] for _ in range(3)]
    assert [(f.data, f.timestamp) for f in got] == [(b"a", 48000), (b"b", 48960), (b"c", 49920)]
    assert q.qsize() == 0


def test_stock_jitter_buffer_still_waits_for_the_next_frame() -> None:
    """If aiortc starts releasing on the marker bit, our replacement can go (see compat)."""
    from aiortc.jitterbuffer import JitterBuffer

    jb = JitterBuffer(capacity=128, is_video=True)
    assert jb.add(packet(1, 100, marker=True))[1] is None


async def test_receivers_still_hold_the_private_jitter_buffer_we_replace() -> None:
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        offerer.addTrack(SyntheticCamera(64))
        with aiortc_compat.ice_hosts(("127.0.0.1",)):
            await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(
            RTCSessionDescription(offerer.localDescription.sdp, "offer")
        )
        (receiver,) = answerer.getReceivers()
        assert hasattr(receiver, "_RTCRtpReceiver__jitter_buffer"), "aiortc internals changed"
        aiortc_compat.use_low_latency_receivers(answerer)
        assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, LowLatencyJitterBuffer)  # type: ignore[attr-defined]
        # The video's decode queue takes a pacer's burst (five frames at once) whole.
        decode = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        for i in range(5):
            decode.put((_Codec("VP8"), JitterFrame(b"\x01rest", i)))
        assert decode.qsize() == 5 and decode.dropped == 0
        # Only loopback candidates were offered, though aioice skips loopback by default.
        sdp = offerer.localDescription.sdp
        candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" 127.0.0.1 " in c for c in candidates)
    finally:
        await offerer.close()
        await answerer.close()
    assert aioice.ice.get_host_addresses(True, False) == aiortc_compat._stock_get_host_addresses(
        True, False
    ), "outside the context the stock address list must apply"


class _Codec:
    def __init__(self, name: str) -> None:
        self.name = name


def test_decode_queue_flushes_a_video_backlog_and_waits_for_a_key_frame() -> None:
    from aiortc.jitterbuffer import JitterFrame

    from mirage.webrtc.aiortc_compat import BoundedDecodeQueue

    asked: list[bool] = []
    q = BoundedDecodeQueue(is_video=True, max_pending=3, on_flush=lambda: asked.append(True))
    vp8 = _Codec("VP8")
    key, delta = b"\x00rest", b"\x01rest"  # VP8 frame tag: bit 0 clear = key frame
    for i in range(3):
        q.put((vp8, JitterFrame(delta, i)))
    q.put((vp8, JitterFrame(delta, 3)))  # the decoder fell behind: backlog goes
    assert q.qsize() == 0 and asked == [True] and q.dropped == 4
    q.put((vp8, JitterFrame(delta, 4)))  # still no key frame: dropped
    assert q.qsize() == 0
    q.put((vp8, JitterFrame(key, 5)))  # decoding resumes at the live edge
    q.put((vp8, JitterFrame(delta, 6)))
    assert [q.get_nowait()[1].timestamp for _ in range(2)] == [5, 6]
    q.put(None)
    assert q.get_nowait() is None


def test_decode_queue_keeps_a_burst_and_flushes_frames_that_waited() -> None:
    """A browser's pacer releases the frames it held behind a large one (a cut) as one
    burst: that is no backlog (flushing it froze the avatar for a key frame, issue 15);
    frames the decoder left waiting for ``max_wait_s`` are."""
    from aiortc.jitterbuffer import JitterFrame

    from mirage.webrtc.aiortc_compat import BoundedDecodeQueue

    now = [0.0]
    asked: list[bool] = []
    q = BoundedDecodeQueue(
        is_video=True,
        max_pending=30,
        on_flush=lambda: asked.append(True),
        max_wait_s=0.1,
        clock=lambda: now[0],
    )
    vp8 = _Codec("VP8")
    big, delta = b"\x01" + bytes(18000), b"\x01rest"
    q.put((vp8, JitterFrame(big, 0)))  # the cut, then four held behind it: one burst
    for i in range(1, 5):
        now[0] += 0.0002
        q.put((vp8, JitterFrame(delta, i)))
    assert q.qsize() == 5 and q.dropped == 0 and asked == []
    assert [q.get_nowait()[1].timestamp for _ in range(5)] == [0, 1, 2, 3, 4]
    q.put((vp8, JitterFrame(delta, 5)))
    now[0] += 0.12  # the decoder stalls: frame 5 has waited 120 ms
    q.put((vp8, JitterFrame(delta, 6)))
    assert q.qsize() == 0 and asked == [True] and q.dropped == 2


def test_keyframe_detection_for_h264_annex_b() -> None:
    from mirage.webrtc.aiortc_compat import is_keyframe

    sps_idr = b"\x00\x00\x00\x01\x67abc\x00\x00\x00\x01\x65def"
    non_idr = b"\x00\x00\x00\x01\x41abc"
    assert is_keyframe("H264", sps_idr) and not is_keyframe("H264", non_idr)
    assert is_keyframe("VP8", b"\x10") and not is_keyframe("VP8", b"\x11")


async def test_candidates_use_the_configured_udp_port_range() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTrack(SyntheticCamera(64))
        with aiortc_compat.ice_hosts(("127.0.0.1",), (41000, 41010)):
            await pc.setLocalDescription(await pc.createOffer())
        ports = [
            int(line.split()[5])
            for line in pc.localDescription.sdp.splitlines()
            if line.startswith("a=candidate")
        ]
        assert ports and all(41000 <= p <= 41010 for p in ports), ports
    finally:
        await pc.close()


def test_port_range_setting_is_parsed_and_checked() -> None:
    import pytest

    from mirage.config import Settings, from_env, parse_port_range

    assert parse_port_range("50000-50100") == (50000, 50100)
    assert from_env({"MIRAGE_UDP_PORTS": "50000-50010"}).udp_ports == (50000, 50010)
    assert from_env({"PORT": "8080"}, Settings()).port == 8080
    for bad in ("abc", "50100-50000", "80-90"):
        with pytest.raises(ValueError, match="range"):
            parse_port_range(bad)


def test_vp8_encoder_keeps_its_codec_through_a_bitrate_wobble() -> None:
    """A REMB change re-opens aiortc's libvpx codec (a key frame): ours follows at most
    one change per hold, except a cut below half, which it follows at once."""
    import aiortc.rtcrtpsender
    from aiortc import RTCRtpCodecParameters
    from av import VideoFrame

    now = [0.0]
    encoder = aiortc_compat.SteadyVp8Encoder(hold_s=5.0, clock=lambda: now[0])
    image = np.zeros((96, 128, 3), np.uint8)

    def encode() -> object:
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
        encoder.encode(frame)
        return encoder.codec

    first = encode()
    encoder.target_bitrate = 1_000_000  # the first change: followed (a new codec)
    assert encoder.target_bitrate == 1_000_000
    second = encode()
    assert second is not first
    now[0] = 2.0
    encoder.target_bitrate = 1_400_000  # within the hold: kept
    encoder.target_bitrate = 800_000
    assert encoder.target_bitrate == 1_000_000 and encode() is second
    encoder.target_bitrate = 400_000  # a cut below half: at once
    assert encoder.target_bitrate == 400_000 and encode() is not second
    now[0] = 20.0
    encoder.target_bitrate = 600_000  # after the hold: followed
    assert encoder.target_bitrate == 600_000
    # install() routes aiortc's senders here for VP8, and only for VP8.
    aiortc_compat.install()
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    opus = RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111
    )
    get_encoder = aiortc.rtcrtpsender.get_encoder  # type: ignore[attr-defined]
    assert isinstance(get_encoder(vp8), aiortc_compat.SteadyVp8Encoder)
    assert not isinstance(get_encoder(opus), aiortc_compat.SteadyVp8Encoder)
