"""``render``: a driving video file → the portrait animated by it, with the voice converted.

One pass over the driving file in its own packet order: each video frame is
animated by the same face backend the server uses and encoded at its own
timestamp; the audio goes through the same voice converter in its own block size,
with the converter's delay taken back out (``AlignedVoice``). Both tracks keep
the driving file's timeline, starting where its video starts, so A/V alignment
is the driver's. Nothing is dropped; the models are made, guarded and closed as
a server session's (``mirage.engine.backends``): a call that hangs past the
guard's deadline falls back (the driver frame, the input block) and is counted.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

import av
import numpy as np

from mirage.engine.backends import (
    GuardPolicy,
    close_backends,
    guard_animator,
    guard_converter,
    make_face,
    make_voice,
    wait_backends_closed,
    with_preset,
)
from mirage.engine.voicechain import validate_voice
from mirage.images import ImageLimits, decode_image
from mirage.models import registry
from mirage.models.avatar.passthrough import fit_square
from mirage.models.base import BadInput, FaceAnimator, Model
from mirage.models.registry import BuildContext
from mirage.models.voice.presets import presets as voice_presets
from mirage.offline.audio import AlignedVoice
from mirage.offline.mux import AUDIO_RATE, AvatarWriter, container_format
from mirage.offline.progress import Progress

log = logging.getLogger(__name__)

SIZE_RANGE = (64, 2048)


@dataclass(frozen=True)
class RenderJob:
    """What to render. ``voice`` is a voice backend, a dsp preset name, or ``auto``."""

    reference: Path
    driving: Path
    out: Path
    face: str = "auto"
    face_options: dict[str, Any] = field(default_factory=dict)
    voice: str = "auto"
    voice_options: dict[str, Any] = field(default_factory=dict)
    voice_preset: str = "bright"  # what a dsp voice without options sounds like (as live)
    audio: bool = True
    size: int = 512
    max_seconds: float | None = None
    models_dir: str | None = None
    test_backends: bool = False  # the test-only switch (Settings.test_backends)
    guard: GuardPolicy = field(default_factory=GuardPolicy)  # deadline and restarts, as live


@dataclass(frozen=True)
class RenderResult:
    out: Path
    face: str
    voice: str | None  # None: no audio track written
    frames: int
    fps: Fraction
    size: int
    codec: str
    audio_seconds: float
    seconds: float  # wall time of the render
    face_errors: int  # frames the face backend failed on (sent as the driver frame)
    voice_errors: int  # blocks the voice backend failed on (sent unconverted)


# -- choosing and making the backends ------------------------------------------------


def _usable(kind: registry.Kind, name: str, job: RenderJob) -> str:
    """``name`` (or what ``auto`` means here, as the server chooses); an explicit
    backend that cannot run here is an error, not a silent pass-through."""
    choice = registry.resolve(kind, name, job.models_dir, testing=job.test_backends)
    for why in choice.passed:
        log.info("%s auto: passed over %s", kind, why)
    return choice.required()


def choose_voice(job: RenderJob) -> tuple[str, dict[str, Any]]:
    """(backend, options) for ``job.voice``: a backend name, a dsp preset, or auto."""
    options = dict(job.voice_options)
    spec = job.voice
    names = [
        b.name
        for b in registry.BACKENDS
        if b.kind == "voice" and (job.test_backends or not b.testing)
    ]
    if spec != "auto" and spec not in names:
        if spec not in voice_presets():
            backends = ", ".join(names)
            raise BadInput(
                f"unknown voice {spec!r}; give a backend ({backends}, auto) "
                f"or a dsp preset ({', '.join(voice_presets())})"
            )
        options = {"preset": spec, **options}
        spec = "dsp"
    name = _usable("voice", spec, job)
    options = validate_voice(name, options, testing=job.test_backends)
    return name, with_preset(name, options, job.voice_preset)  # as a live session


class MediaClock:
    """The driving file's time of the frame being animated: backends that smooth or
    ease over time (warp) then move at the video's pace, whatever the render speed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_animator(job: RenderJob, image: np.ndarray, clock: MediaClock) -> tuple[str, FaceAnimator]:
    """The face backend holding ``image`` (``NoFaceError`` when it has no face),
    behind the same guard as a live session's."""
    name = _usable("face", job.face, job)
    options = registry.validate("face", name, job.face_options, testing=job.test_backends)
    animator, make = make_face(name, options, image, BuildContext(job.models_dir, clock))
    return name, guard_animator(animator, make, image, job.guard, name, "render")


# -- checking the inputs -------------------------------------------------------------


def check_job(job: RenderJob) -> None:
    """Everything that can be refused before any decoding or model loading."""
    for what, path in (("reference image", job.reference), ("driving video", job.driving)):
        if not path.exists():
            raise BadInput(f"{what} not found: {path}")
        if not path.is_file():
            raise BadInput(f"{what} is not a file: {path}")
    container_format(job.out)
    if not job.out.parent.is_dir():
        raise BadInput(f"output folder does not exist: {job.out.parent}")
    if job.out.resolve() in (job.driving.resolve(), job.reference.resolve()):
        raise BadInput(f"the output would overwrite an input: {job.out}")
    low, high = SIZE_RANGE
    if not low <= job.size <= high or job.size % 2:
        raise BadInput(f"size must be an even number of pixels in {low}..{high}, got {job.size}")
    if job.max_seconds is not None and not job.max_seconds > 0:
        raise BadInput(f"max seconds must be > 0, got {job.max_seconds}")


def load_reference(path: Path) -> np.ndarray:
    limits = ImageLimits()
    if path.stat().st_size > limits.max_bytes:
        raise BadInput(f"reference image {path} is over {limits.max_bytes} bytes")
    try:
        return decode_image(path.read_bytes(), limits)
    except BadInput as exc:
        raise type(exc)(f"reference image {path}: {exc}") from None


def _open_driving(path: Path) -> Any:
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise BadInput(f"cannot read the driving video {path}: {exc}") from None


def _frame_rate(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            fps = Fraction(rate).limit_denominator(100_000)
            if 1 <= fps <= 240:
                return fps
    return Fraction(25)


def _total_frames(container: Any, stream: Any, fps: Fraction, limit: float | None) -> int | None:
    total = int(stream.frames or 0)
    if not total and container.duration:
        total = round(container.duration / av.time_base * fps)
    if limit is not None:
        cap = math.ceil(limit * fps - 1e-9)
        total = min(total, cap) if total else cap
    return total or None


class _VideoIn:
    """Decoded driving frames → avatar frames with their output timestamps.

    A frame keeps its own time (variable frame rates survive); the clock the
    backend smooths with is set to it first. A frame the backend fails on is sent
    as the driver frame, as live, and counted.
    """

    def __init__(
        self, face: str, animator: FaceAnimator, clock: MediaClock, fps: Fraction, t0: float
    ) -> None:
        self.face, self._animator, self._clock = face, animator, clock
        self._fps, self._t0 = fps, t0
        self._last_pts = -1
        self.errors = 0

    def time(self, frame: Any) -> float:
        """Seconds since the video's first frame."""
        if frame.pts is None or frame.time_base is None:
            return float((self._last_pts + 1) / self._fps)
        return float(frame.pts * frame.time_base) - self._t0

    def frame(self, frame: Any, t: float, size: int) -> tuple[np.ndarray, int]:
        self._clock.now = t
        rgb = frame.to_ndarray(format="rgb24")
        try:
            out = self._animator.animate(rgb, size)
        except Exception as exc:
            self.errors += 1
            log.warning("face backend %s failed (%s); using the driver frame", self.face, exc)
            out = fit_square(rgb, size)
        self._last_pts = max(round(t * self._fps), self._last_pts + 1)
        return out, self._last_pts


class _AudioIn:
    """Decoded driving audio frames → mono samples placed on the video's timeline.

    Each frame is put at its own timestamp: a gap is filled with silence and an
    overlap (or audio before the video starts) is cut, so sample n of the output
    is always ``t0 + n / rate`` of the driving file.
    """

    def __init__(self, rate: int, voice: AlignedVoice, t0: float, limit: float | None):
        self.rate = rate
        self.voice = voice
        self._t0 = t0
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        self._limit = None if limit is None else round(limit * rate)
        self.position = 0  # samples placed so far
        self.done = False

    def frame(self, frame: Any) -> np.ndarray:
        """Converted output ready after this frame (often empty at first)."""
        if self.done:
            return np.zeros(0, np.float32)
        parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        x = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        start = self.position
        if frame.pts is not None and frame.time_base is not None:
            start = round((float(frame.pts * frame.time_base) - self._t0) * self.rate)
        if start > self.position + self.rate // 1000:  # a gap of over 1 ms: silence
            x = np.concatenate([np.zeros(start - self.position, np.float32), x])
        elif start < self.position:  # overlap, or before the video's first frame
            x = x[self.position - start :]
        if self._limit is not None and self.position + len(x) >= self._limit:
            x = x[: max(0, self._limit - self.position)]
            self.done = True
        self.position += len(x)
        return self.voice.push(x)


def render(job: RenderJob, progress: TextIO | None = None) -> RenderResult:
    """Render ``job``; a typed ``MirageError`` for anything wrong with its inputs.

    The output appears under ``job.out`` only when complete.
    """
    started = time.monotonic()
    check_job(job)
    source = _open_driving(job.driving)
    try:
        return _render(job, source, progress, started)
    finally:
        source.close()


def _render(job: RenderJob, source: Any, stream: TextIO | None, started: float) -> RenderResult:
    if not source.streams.video:
        raise BadInput(f"the driving file has no video stream: {job.driving}")
    audio = source.streams.audio[0] if job.audio and source.streams.audio else None
    if job.audio and audio is None:
        log.info("the driving video has no audio: rendering video only")
    voice_name, voice_options = choose_voice(job) if audio is not None else (None, {})
    reference = load_reference(job.reference)
    models: list[Model] = []  # closed whatever happens, as a session's
    try:
        return _run(job, source, stream, started, reference, models, voice_name, voice_options)
    finally:
        close_backends(models)
        if not wait_backends_closed(models):
            log.warning("a model is still busy after the render (a call that hung)")


def _run(
    job: RenderJob,
    source: Any,
    stream: TextIO | None,
    started: float,
    reference: np.ndarray,
    models: list[Model],
    voice_name: str | None,
    voice_options: dict[str, Any],
) -> RenderResult:
    """The render proper; every model it makes goes into ``models`` (closed by the caller)."""
    video = source.streams.video[0]
    video.thread_type = "AUTO"
    audio = source.streams.audio[0] if voice_name is not None else None
    fps = _frame_rate(video)
    t0 = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
    clock = MediaClock()
    face, animator = make_animator(job, reference, clock)
    models.append(animator)
    frames = _VideoIn(face, animator, clock, fps, t0)
    sound: _AudioIn | None = None
    if audio is not None and voice_name is not None:
        context = BuildContext(job.models_dir)
        made, make = make_voice(voice_name, voice_options, context, job.voice_preset)
        converter = guard_converter(made, make, job.guard, voice_name, "render")
        models.append(converter)
        rate = int(audio.codec_context.sample_rate or audio.rate)
        aligned = AlignedVoice(converter, rate, AUDIO_RATE, on_error=_voice_failed(voice_name))
        sound = _AudioIn(rate, aligned, t0, job.max_seconds)
        if voice_name == "dsp":
            voice_name = f"dsp ({voice_options.get('preset') or 'custom'})"

    limit = math.inf if job.max_seconds is None else job.max_seconds - 1e-6
    bar = Progress(stream, _total_frames(source, video, fps, job.max_seconds))
    with AvatarWriter(job.out, job.size, fps, audio=sound is not None) as writer:
        video_done = False
        try:
            for packet in source.demux(*(s for s in (video, audio) if s is not None)):
                for frame in _decode(packet, job.driving):
                    if packet.stream is video and not video_done:
                        t = frames.time(frame)
                        if t >= limit:
                            video_done = True
                            continue
                        writer.video(*frames.frame(frame, t, job.size))
                        bar.update(writer.frames)
                    elif sound is not None and packet.stream is audio:
                        writer.audio(sound.frame(frame))
                if video_done and (sound is None or sound.done):
                    break
            if writer.frames == 0:
                raise BadInput(f"no video frame could be decoded from {job.driving}")
            if sound is not None:
                writer.audio(sound.voice.finish())
            writer.finish()
        finally:
            bar.close()
    return RenderResult(
        out=job.out,
        face=face,
        voice=voice_name,
        frames=writer.frames,
        fps=fps,
        size=job.size,
        codec=writer.codec,
        audio_seconds=writer.audio_samples / AUDIO_RATE,
        seconds=time.monotonic() - started,
        face_errors=frames.errors,
        voice_errors=0 if sound is None else sound.voice.errors,
    )


def _decode(packet: Any, path: Path) -> list[Any]:
    try:
        return list(packet.decode())
    except av.FFmpegError as exc:
        log.warning("skipping a damaged packet in %s: %s", path, exc)
        return []


def _voice_failed(name: str) -> Any:
    def report(exc: Exception) -> None:
        log.warning("voice backend %s failed (%s); using the input block", name, exc)

    return report
