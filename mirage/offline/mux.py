"""The output file: H.264 (or MPEG-4) video and AAC audio, written under a temporary
name and renamed into place only when complete.

A render that fails or is interrupted therefore never leaves a half-written file
under the name the user asked for: ``abort`` (or any exception inside the ``with``
block) removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from mirage.models.base import BadInput

#: container format by output suffix
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
AUDIO_RATE = 48000
AUDIO_BITRATE = 128_000
MPEG4_BITRATE = 6_000_000


def container_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BadInput(f"the output must end in {', '.join(FORMATS)}; got {path.name!r}")
    return fmt


def video_codec() -> str:
    """libx264 where this PyAV build has it, else FFmpeg's own MPEG-4 part 2 encoder."""
    try:
        av.codec.Codec("libx264", "w")
    except Exception:
        return "mpeg4"
    return "libx264"


def _reserve(out: Path) -> Path:
    """A new hidden file beside ``out`` (same file system, so the final rename is
    atomic), created with the usual permissions (unlike ``mkstemp``'s 0600)."""
    while True:
        partial = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")
        try:
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return partial


class AvatarWriter:
    """Square RGB frames and mono float32 audio in, one finished file out."""

    def __init__(
        self,
        out: Path,
        size: int,
        fps: Fraction,
        audio: bool,
        crf: int = 18,
    ) -> None:
        self.out = out
        fmt = container_format(out)
        self.partial = _reserve(out)
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        self.codec = video_codec()
        self._closed = False
        try:
            self._container = av.open(str(self.partial), "w", format=fmt, options=options)
            video = self._container.add_stream(self.codec, rate=fps)
            assert isinstance(video, VideoStream)
            video.width = video.height = size
            video.pix_fmt = "yuv420p"
            if self.codec == "libx264":
                video.options = {"crf": str(crf), "preset": "fast"}
            else:
                video.bit_rate = MPEG4_BITRATE
            self._video = video
            self._time_base = Fraction(1) / fps
            self._audio: AudioStream | None = None
            if audio:
                sound = self._container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
                assert isinstance(sound, AudioStream)
                sound.bit_rate = AUDIO_BITRATE
                self._audio = sound
        except BaseException:
            self.abort()
            raise
        self._audio_position = 0
        self.audio_samples = 0
        self.frames = 0

    def video(self, rgb: np.ndarray, pts: int) -> None:
        """One avatar frame (RGB uint8, size×size) shown from ``pts`` / fps seconds."""
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = self._time_base
        self._container.mux(self._video.encode(frame))
        self.frames += 1

    def audio(self, samples: np.ndarray) -> None:
        """The next mono float32 samples at ``AUDIO_RATE`` (contiguous with the last)."""
        if self._audio is None or not len(samples):
            return
        x = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(x, format="fltp", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._audio_position
        frame.time_base = Fraction(1, AUDIO_RATE)
        self._audio_position += x.shape[1]
        self._container.mux(self._audio.encode(frame))
        self.audio_samples += x.shape[1]

    def finish(self) -> Path:
        """Flush the encoders, close the file and move it to its final name."""
        self._container.mux(self._video.encode(None))
        if self._audio is not None:
            self._container.mux(self._audio.encode(None))
        self._container.close()
        self._closed = True
        os.replace(self.partial, self.out)
        return self.out

    def abort(self) -> None:
        """Close and delete the partial file (safe to call twice)."""
        if not self._closed:
            self._closed = True
            container = getattr(self, "_container", None)
            if container is not None:
                # a broken stream may not close cleanly; the file is deleted anyway
                with contextlib.suppress(Exception):
                    container.close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> AvatarWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is not None:
            self.abort()
