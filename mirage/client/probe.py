"""A measuring client: a synthetic camera and microphone whose round trip it times.

Each video frame carries its id in large black/white blocks (robust to VP8/H.264
and to colour inversion, thanks to two reference blocks); the microphone sends a
tone gated on for 100 ms every 500 ms, and each onset's return is timed. Used by
the tests, ``bench/loopback.py`` and ``mirage bench``.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from mirage.client.connect import ClientOptions, peer_connection, post_offer, say_goodbye
from mirage.tracks.pcm import to_mono_float
from mirage.webrtc import aiortc_compat

ID_BITS = 16
BLOCK = 24  # pixels per id block
COLUMNS = 9  # id blocks per row: 18 cells in 2 rows fit a 256-pixel frame
TONE_HZ = 440.0
BEEP_PERIOD_S = 0.5
BEEP_ON_S = 0.1


def draw_id(frame_id: int, size: int) -> np.ndarray:
    """An RGB test image: a colour gradient with the id in the top block rows."""
    y, x = np.mgrid[0:size, 0:size]
    img = np.stack(
        [(x * 255 // size), (y * 255 // size), np.full_like(x, (frame_id * 7) % 256)], axis=-1
    ).astype(np.uint8)
    rows = (ID_BITS + 2 + COLUMNS - 1) // COLUMNS
    img[: rows * BLOCK, : COLUMNS * BLOCK] = 0
    for cell in range(ID_BITS + 2):
        white = cell == 0 or (cell >= 2 and (frame_id >> (cell - 2)) & 1)
        if white:
            img[_cell(cell)] = 255  # cell 0: reference white; cell 1: reference black
    return img


def _cell(index: int, margin: int = 0) -> tuple[slice, slice]:
    top, left = (index // COLUMNS) * BLOCK, (index % COLUMNS) * BLOCK
    return slice(top + margin, top + BLOCK - margin), slice(left + margin, left + BLOCK - margin)


def read_id(img: np.ndarray, drawn_size: int = 512) -> int | None:
    """The id drawn by ``draw_id`` on a ``drawn_size`` frame, also after the server
    resized it (adaptive quality) or inverted its colours; None if unreadable."""
    scale = img.shape[0] / drawn_size
    if min(img.shape[:2]) < COLUMNS * BLOCK * scale or BLOCK * scale < 8:
        return None

    def level(i: int) -> float:
        rows, cols = _cell(i, BLOCK // 4)
        r = slice(int(rows.start * scale), int(rows.stop * scale))
        c = slice(int(cols.start * scale), int(cols.stop * scale))
        return float(img[r, c].mean())

    white, black = level(0), level(1)
    if abs(white - black) < 80:
        return None
    value = 0
    for bit in range(ID_BITS):
        v = level(bit + 2)
        if abs(v - white) < abs(v - black):
            value |= 1 << bit
    return value


async def _pace(start: float, due: float, stall: tuple[float, float] | None) -> None:
    """Sleep until ``due``; inside a stall window (start offset, length) hold everything
    until the window ends, so the frames it covers then leave in one burst."""
    if stall is not None:
        at, length = start + stall[0], start + stall[0] + stall[1]
        if at <= due < length:
            due = length
    wait = due - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)


class SyntheticCamera(MediaStreamTrack):
    """size×size frames at ``fps`` with ids; remembers when each id was sent."""

    kind = "video"

    def __init__(
        self,
        size: int = 512,
        fps: float = 20.0,
        flash_every_s: float | None = None,
        images: list[np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.size, self.fps = size, fps
        self.images = images  # real frames to play (cycled; the id is drawn over them)
        self.sent: dict[int, float] = {}
        self.flashes: list[float] = []  # send time of each white frame
        self._flash_every = None if flash_every_s is None else round(flash_every_s * fps)
        self._next = 0
        self._start: float | None = None
        self.stall: tuple[float, float] | None = None  # (after s, for s): a network stall

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._next / self.fps
        await _pace(self._start, due, self.stall)
        frame_id = self._next
        self._next += 1
        image = draw_id(frame_id, self.size)
        if self.images:
            rows = (ID_BITS + 2 + COLUMNS - 1) // COLUMNS * BLOCK
            picture = self.images[frame_id % len(self.images)]
            image[rows:] = picture[rows : self.size, : self.size]
        # A flash lasts 3 frames, so a model that skips frames still shows one.
        flash = self._flash_every is not None and frame_id % self._flash_every < 3
        if flash:
            image[image.shape[0] // 4 :] = 255  # a white flash below the id rows
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = round(frame_id * 90000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        # Stamped with its scheduled capture time: a frame held up in a stall is old.
        self.sent[frame_id] = min(due, time.monotonic())
        if flash and frame_id % self._flash_every == 0:  # type: ignore[operator]
            self.flashes.append(self.sent[frame_id])
        return frame


class BeepMicrophone(MediaStreamTrack):
    """48 kHz mono 20 ms frames: a tone gated on for ``on_s`` (100 ms) every 500 ms."""

    kind = "audio"

    def __init__(
        self,
        on_s: float = BEEP_ON_S,
        hz: float = TONE_HZ,
        harmonics: int = 1,
        period_s: float = BEEP_PERIOD_S,
    ) -> None:
        super().__init__()
        self.on_s = on_s
        self.period_s = period_s
        self.hz = hz
        self.harmonics = harmonics  # >1: a voice-like buzz that pitch trackers lock onto
        self.onsets: list[float] = []  # send time of each beep's first frame
        self._n = 0
        self._start: float | None = None
        self.stall: tuple[float, float] | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._n * 0.02
        await _pace(self._start, due, self.stall)
        t = (self._n * 960 + np.arange(960)) / 48000
        phase = t % self.period_s
        gate = (phase < self.on_s).astype(np.float32)
        tone = sum(np.sin(2 * np.pi * self.hz * k * t) / k for k in range(1, self.harmonics + 1))
        peak = sum(1 / k for k in range(1, self.harmonics + 1))
        pcm = (0.5 * gate * tone / peak * 32767).astype(np.int16)
        if gate[0] and round(self._n * 0.02, 6) % self.period_s < 0.02 - 1e-9:
            self.onsets.append(min(due, time.monotonic()))
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._n * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self._n += 1
        return frame


@dataclass
class Received:
    """What came back: per video frame (id, latency s, image), audio levels and onsets."""

    video_ids: list[int] = field(default_factory=list)
    video_latency: list[float] = field(default_factory=list)
    video_times: list[float] = field(default_factory=list)
    unreadable: int = 0
    last_image: np.ndarray | None = None
    first_image: np.ndarray | None = None
    audio_frames: int = 0
    audio_rms: list[float] = field(default_factory=list)
    audio_onsets: list[float] = field(default_factory=list)
    audio_latency: list[float] = field(default_factory=list)
    flashes: list[tuple[float, int | None]] = field(default_factory=list)  # (arrival, id)
    audio_times: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=3000)  # arrivals, the last minute
    )
    audio_tail: collections.deque[np.ndarray] = field(
        default_factory=lambda: collections.deque(maxlen=150)  # the last 3 s of 20 ms frames
    )


class Probe:
    """One client peer connection to a Mirage (or any /offer-speaking) server."""

    def __init__(
        self,
        base_url: str,
        *,
        size: int = 512,
        fps: float = 20.0,
        video: bool = True,
        audio: bool = True,
        options: dict[str, object] | None = None,
        ice_hosts: tuple[str, ...] = ("127.0.0.1",),
        low_latency_receive: bool = True,
        keep_images: bool = False,
        video_codec: str | None = None,
        beep_on_s: float = BEEP_ON_S,
        tone_hz: float = TONE_HZ,
        harmonics: int = 1,
        sync_marks: bool = False,
        stall: tuple[float, float] | None = None,
        images: list[np.ndarray] | None = None,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # The token goes as a Bearer token when the server wants auth (MIRAGE_TOKEN / a JWT).
        self.client = ClientOptions(self.base_url, token=token, ice_hosts=ice_hosts)
        # sync_marks: once a second a white frame and a voice-like buzz leave together.
        flash = 1.0 if sync_marks else None
        self.camera = SyntheticCamera(size, fps, flash, images) if video else None
        if sync_marks:
            self.mic = BeepMicrophone(0.1, 180.0, 10, period_s=1.0) if audio else None
        else:
            self.mic = BeepMicrophone(beep_on_s, tone_hz, harmonics) if audio else None
        for track in (self.camera, self.mic):
            if track is not None:
                track.stall = stall  # both stop together, like a network outage
        self.options = options or {}
        self.low_latency_receive = low_latency_receive
        self.keep_images = keep_images
        self.video_codec = video_codec
        self.received = Received()
        self.session_id: str | None = None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # replaced in connect()
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        """The desktop client's exchange (mirage/client/connect.py): the server's ICE
        servers, offer, answer. Raises ``Refused`` with the server's reason."""
        async with aiohttp.ClientSession() as http:
            await self.pc.close()  # never used: made in __init__ so ``pc`` always exists
            self.pc = await peer_connection(http, self.client)
            self._add_tracks()
            self.session_id, answer = await post_offer(http, self.client, self.pc, self.options)
        await self.pc.setRemoteDescription(answer)
        if self.low_latency_receive:
            aiortc_compat.use_low_latency_receivers(self.pc)

    def _add_tracks(self) -> None:
        pc = self.pc
        start = time.monotonic() + 0.05  # one clock for both tracks: marks leave together
        for track in (self.camera, self.mic):
            if track is not None:
                track._start = start
        for track in (self.camera, self.mic):
            if track is not None:
                pc.addTrack(track)
        if self.video_codec:
            self._prefer_codec(self.video_codec)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            reader = self._read_video if track.kind == "video" else self._read_audio
            self._tasks.append(asyncio.create_task(reader(track)))

    def _prefer_codec(self, name: str) -> None:
        """Offer only ``name`` (e.g. VP8, H264) for video, plus its retransmission codec."""
        codecs = RTCRtpSender.getCapabilities("video").codecs
        wanted = [c for c in codecs if c.mimeType.lower() in (f"video/{name.lower()}", "video/rtx")]
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.setCodecPreferences(wanted)

    async def _read_video(self, track: MediaStreamTrack) -> None:
        got = self.received
        was_flash = False
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                img = frame.to_ndarray(format="rgb24")  # type: ignore[union-attr]
                if got.first_image is None:
                    got.first_image = img
                frame_id = read_id(img, self.camera.size if self.camera else 512)
                flash = float(img[img.shape[0] // 2 :].mean()) > 200
                if flash and not was_flash:
                    got.flashes.append((now, frame_id))
                was_flash = flash
                if self.keep_images:
                    got.last_image = img
                sent = None
                if self.camera is not None and frame_id is not None:
                    sent = self.camera.sent.get(frame_id)
                if sent is None or frame_id is None:
                    got.unreadable += 1
                    continue
                if got.video_ids and frame_id == got.video_ids[-1]:
                    continue  # a repeated frame
                got.video_ids.append(frame_id)
                got.video_latency.append(now - sent)
                got.video_times.append(now)
                got.last_image = img
        except MediaStreamError:
            return

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        got = self.received
        was_loud = False
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                assert isinstance(frame, AudioFrame)
                mono = to_mono_float(frame)
                got.audio_tail.append(mono)
                rms = float(np.sqrt(np.mean(mono**2)))
                got.audio_frames += 1
                got.audio_times.append(now)
                got.audio_rms.append(rms)
                if not was_loud:
                    above = np.flatnonzero(np.abs(mono) > 0.1)
                    if len(above) and rms > 0.02:
                        # A frame starts playing as it arrives: sample i plays i/rate later.
                        onset = now + above[0] / frame.sample_rate
                        got.audio_onsets.append(onset)
                        self._match_onset(onset)
                        was_loud = True
                elif rms < 0.02:
                    was_loud = False
        except MediaStreamError:
            return

    def _match_onset(self, now: float) -> None:
        if self.mic is None:
            return
        # The beep sent most recently before `now` (beeps are further apart than a trip).
        candidates = [t for t in self.mic.onsets if t <= now]  # onsets are frame starts
        if candidates:
            latency = now - candidates[-1]
            if latency < self.mic.period_s * 0.9:
                self.received.audio_latency.append(latency)

    def av_skew(self) -> list[float]:
        """Per returned mark: audio latency − video latency (s); 0 = in sync.

        The video latency is that of the flash frame that came back (identified by
        its id); the audio latency that of the buzz sent with its flash.
        """
        if self.camera is None or self.mic is None:
            return []
        out = []
        for back_v, frame_id in self.received.flashes:
            sent_v = self.camera.sent.get(frame_id) if frame_id is not None else None
            group = max((t for t in self.camera.flashes if t <= back_v), default=None)
            if sent_v is None or group is None:
                continue
            sent_a = min(self.mic.onsets, key=lambda t: abs(t - group), default=None)
            back_a = min(self.received.audio_onsets, key=lambda t: abs(t - back_v), default=None)
            if sent_a is None or back_a is None:
                continue
            if abs(sent_a - group) > 0.1 or abs(back_a - back_v) > 0.45:
                continue
            out.append((back_a - sent_a) - (back_v - sent_v))
        return out

    async def close(self, delete: bool = True) -> None:
        if delete and self.session_id:
            async with aiohttp.ClientSession() as http:
                await say_goodbye(http, self.client, self.session_id)
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
