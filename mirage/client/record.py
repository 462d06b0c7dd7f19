"""Recording the avatar and the voice to an mp4 (H.264 + AAC): ``Recorder`` is the
desktop client's sink; ``TrackRecorder`` records any aiortc tracks (a bot's)."""

from __future__ import annotations

import asyncio
import fractions
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame, VideoFrame

from mirage.client.hub import AUDIO_RATE, GAP_S, VIDEO_RATE, Hub, Timeline
from mirage.client.sinks import ThreadSink
from mirage.tracks.fanout import Frame, pump
from mirage.tracks.pcm import to_s16_mono


class Recorder(ThreadSink):
    """An mp4 (H.264 + AAC) of the avatar and the voice, timed by the frames' hub
    timestamps from the first frame on: gaps (a reconnection) become held video
    and silence, so the two stay in step. Video is scaled to ``width``×``height``."""

    name = "recorder"

    def __init__(
        self,
        path: str,
        *,
        width: int = 512,
        height: int = 512,
        fps: float = 20.0,
        max_ms: float = 2000.0,
    ) -> None:
        super().__init__(capacity=int(max_ms / 1000 * (fps + 50)))
        self.path = path
        self.size = (width - width % 2, height - height % 2)
        self.fps = fps
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._origin: float | None = None  # hub time (s) of the first frame
        self._last_video_pts = -1
        self._samples = 0  # audio samples written (the next audio pts)
        self.video_frames = 0

    def open(self) -> str:
        try:
            with open(self.path, "wb"):  # FFmpeg opens the file only at the first frame
                pass
            self._container = av.open(self.path, mode="w", format="mp4")
        except (av.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise OSError(f"cannot write {self.path!r}: {reason}") from None
        video = self._container.add_stream("libx264", rate=round(self.fps))
        video.width, video.height = self.size
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = fractions.Fraction(1, VIDEO_RATE)
        video.options = {"preset": "veryfast", "tune": "zerolatency"}
        self._video = video
        self._audio = self._container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        self.start()
        return self.path

    def _write(self, frame: Frame) -> None:
        assert frame.pts is not None and frame.time_base is not None
        at = float(frame.pts * frame.time_base)
        if self._origin is None:
            self._origin = at
        at -= self._origin
        if isinstance(frame, VideoFrame):
            self._write_video(frame, at)
        else:
            self._write_audio(frame, at)

    def _write_video(self, frame: VideoFrame, at: float) -> None:
        pts = max(self._last_video_pts + 1, round(at * VIDEO_RATE))
        out = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p")
        out.pts, out.time_base = pts, fractions.Fraction(1, VIDEO_RATE)
        self._last_video_pts = pts
        self._container.mux(self._video.encode(out))
        self.video_frames += 1

    def _write_audio(self, frame: AudioFrame, at: float) -> None:
        start = round(at * AUDIO_RATE)
        if start - self._samples > GAP_S * AUDIO_RATE:  # a gap: fill it with silence
            self._encode_audio(np.zeros(start - self._samples, np.int16))
        self._encode_audio(to_s16_mono(frame))

    def _encode_audio(self, samples: np.ndarray) -> None:
        for at in range(0, len(samples), 960):
            chunk = samples[at : at + 960]
            out = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            out.sample_rate = AUDIO_RATE
            out.pts, out.time_base = self._samples, fractions.Fraction(1, AUDIO_RATE)
            self._samples += len(chunk)
            self._container.mux(self._audio.encode(out))

    def _finish(self) -> None:
        if self._container is None:
            return
        try:
            for stream in (self._video, self._audio):
                self._container.mux(stream.encode(None))
        finally:
            self._container.close()
            self._container = None


class TrackRecorder:
    """Records any aiortc tracks (a relay's output, say) to an mp4. Frames are
    restamped on one wall clock as they arrive, so tracks with unrelated
    timestamps stay in step, and a track that never delivers does no harm."""

    def __init__(
        self,
        path: str,
        video: MediaStreamTrack | None,
        audio: MediaStreamTrack | None,
        *,
        size: int = 512,
        fps: float = 20.0,
    ) -> None:
        self.recorder = Recorder(path, width=size, height=size, fps=fps)
        self._tracks = [(t, k) for t, k in ((video, "video"), (audio, "audio")) if t is not None]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.recorder.open)
        timeline = Timeline()
        for track, kind in self._tracks:
            hub = Hub(kind, timeline)
            hub.listen(self.recorder.put)
            self._tasks.append(asyncio.create_task(pump(track, hub)))

    async def stop(self) -> None:
        """Stop reading and finish the file."""
        for task in self._tasks:
            task.cancel()
        await asyncio.get_running_loop().run_in_executor(None, self.recorder.close)
