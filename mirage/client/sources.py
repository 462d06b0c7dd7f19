"""Where the client's camera and microphone come from: a media file (optionally
looped) or the platform's capture devices, each delivered into a ``Hub``.

Files are read by our own paced reader rather than aiortc's ``MediaPlayer``:
with ``loop=True`` the player restarts video timestamps at each pass and then
sends a whole pass unpaced. Devices use ``MediaPlayer`` (live formats are not
throttled), drained at once into the hub so its unbounded queue never grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiortc.contrib.media import MediaPlayer
from av import AudioFrame, VideoFrame

from mirage.client.hub import AUDIO_RATE, Hub
from mirage.tracks.fanout import pump

log = logging.getLogger(__name__)

FRAME_SAMPLES = AUDIO_RATE // 50  # 20 ms


class SourceError(Exception):
    """An input that cannot be opened (missing file, no such camera or microphone)."""


@dataclass
class Source:
    """A running input: its hubs and what to stop when the client ends."""

    video: Hub | None
    audio: Hub | None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop_event: threading.Event | None = None
    _thread: threading.Thread | None = None
    _players: list[MediaPlayer] = field(default_factory=list)

    async def close(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()
        for task in self._tasks:
            task.cancel()
        for player in self._players:
            for track in (player.video, player.audio):
                if track is not None:
                    track.stop()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 2.0)


def _decode(path: str, want_video: bool, want_audio: bool) -> Iterator[tuple[float, object]]:
    """(media time s, frame) for one pass over the file; audio as 20 ms 48 kHz mono."""
    with av.open(path) as container:
        streams: list[Any] = []
        if want_video and container.streams.video:
            streams.append(container.streams.video[0])
        if want_audio and container.streams.audio:
            streams.append(container.streams.audio[0])
        resampler = av.AudioResampler(
            format="s16", layout="mono", rate=AUDIO_RATE, frame_size=FRAME_SAMPLES
        )
        samples = 0
        for frame in container.decode(*streams):
            if isinstance(frame, VideoFrame):
                if frame.time is not None:
                    yield frame.time, frame
            elif isinstance(frame, AudioFrame):
                for out in resampler.resample(frame):
                    yield samples / AUDIO_RATE, out
                    samples += out.samples


def _probe(path: str) -> tuple[bool, bool, float]:
    try:
        with av.open(path) as container:
            duration = (container.duration or 0) / av.time_base
            return bool(container.streams.video), bool(container.streams.audio), duration
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot open input {path!r}: {exc}") from None


def open_file(
    path: str | Path,
    hubs: tuple[Hub | None, Hub | None],
    *,
    loop: bool = False,
) -> Source:
    """Play ``path`` in real time into the (video, audio) hubs; ``loop`` repeats it.

    Call on the event loop; a reader thread paces frames by wall clock and hands
    them over one at a time, so nothing queues ahead of real time.
    """
    path = str(path)
    has_video, has_audio, duration = _probe(path)
    video = hubs[0] if has_video else None
    audio = hubs[1] if has_audio else None
    if video is None and audio is None:
        raise SourceError(f"input {path!r} has neither video nor audio")
    aio = asyncio.get_running_loop()
    stop = threading.Event()

    def deliver(frame: object, hub: Hub) -> None:
        assert isinstance(frame, (AudioFrame, VideoFrame))
        if not stop.is_set():
            hub.push(frame)

    def run() -> None:
        start = time.monotonic()
        offset = 0.0  # media time of this pass's start
        try:
            while not stop.is_set():
                last = 0.0
                for media_s, frame in _decode(path, video is not None, audio is not None):
                    last = max(last, media_s)
                    wait = start + offset + media_s - time.monotonic()
                    if wait > 0 and stop.wait(wait):
                        return
                    hub = video if isinstance(frame, VideoFrame) else audio
                    assert hub is not None
                    try:
                        aio.call_soon_threadsafe(deliver, frame, hub)
                    except RuntimeError:  # the event loop closed under us
                        return
                if not loop:
                    break
                offset += max(duration, last + 0.02)
        except av.FFmpegError as exc:
            log.warning("reading %s failed: %s", path, exc)
        finally:
            for hub in (video, audio):
                if hub is not None:
                    with contextlib.suppress(RuntimeError):  # the loop already closed
                        aio.call_soon_threadsafe(hub.end)

    thread = threading.Thread(target=run, name="mirage-client-file", daemon=True)
    thread.start()
    return Source(video, audio, _stop_event=stop, _thread=thread)


def camera_spec(camera: str) -> tuple[str, str | None]:
    """``--camera`` → (FFmpeg input, format) for this platform: an index N means
    /dev/videoN (Linux), device N (macOS), or a DirectShow name (Windows)."""
    system = platform.system()
    if system == "Linux":
        return (f"/dev/video{camera}" if camera.isdigit() else camera), "v4l2"
    if system == "Darwin":
        return f"{camera}:none", "avfoundation"
    if system == "Windows":
        return f"video={camera}", "dshow"
    raise SourceError(f"no camera support on {system}; use --input FILE")


def mic_spec(mic: str) -> tuple[str, str | None]:
    """``--mic`` → (FFmpeg input, format): a PulseAudio source on Linux ("default"),
    a device index on macOS, a DirectShow name on Windows."""
    system = platform.system()
    if system == "Linux":
        return mic, "pulse"
    if system == "Darwin":
        return f"none:{mic}", "avfoundation"
    if system == "Windows":
        return f"audio={mic}", "dshow"
    raise SourceError(f"no microphone support on {system}; use --input FILE")


def open_devices(
    camera: str | None,
    mic: str | None,
    hubs: tuple[Hub | None, Hub | None],
    *,
    video_size: str = "640x480",
) -> Source:
    """Capture ``camera`` and/or ``mic`` into the hubs (call on the event loop)."""
    source = Source(None, None)
    try:
        if camera is not None and hubs[0] is not None:
            file, fmt = camera_spec(camera)
            player = _player(file, fmt, {"video_size": video_size, "framerate": "30"})
            source._players.append(player)
            if player.video is None:
                raise SourceError(f"camera {camera!r} ({file}) gave no video")
            source.video = hubs[0]
            source._tasks.append(asyncio.create_task(pump(player.video, hubs[0])))
        if mic is not None and hubs[1] is not None:
            file, fmt = mic_spec(mic)
            player = _player(file, fmt, {})
            source._players.append(player)
            if player.audio is None:
                raise SourceError(f"microphone {mic!r} gave no audio")
            source.audio = hubs[1]
            source._tasks.append(asyncio.create_task(pump(player.audio, hubs[1])))
    except BaseException:
        for player in source._players:
            for track in (player.video, player.audio):
                if track is not None:
                    track.stop()
        raise
    return source


def _player(file: str, fmt: str | None, options: dict[str, str]) -> MediaPlayer:
    try:
        return MediaPlayer(file, format=fmt, options=options)
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot open {file!r} ({fmt}): {exc}") from None
