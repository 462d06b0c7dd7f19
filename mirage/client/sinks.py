"""Where the avatar goes on the desktop: a virtual camera, a virtual microphone (an
mp4 file: mirage/client/record.py). Each sink owns one writer thread fed through a bounded buffer, so a
slow device or encoder drops frames (counted) instead of stalling the event loop.

The device boundary is one factory per sink (``camera_factory``,
``stream_factory``): tests replace it, everything above it runs for real.
"""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any, Protocol

from av import AudioFrame, VideoFrame

from mirage.client.hub import AUDIO_RATE
from mirage.engine.dropoldest import DropOldest
from mirage.engine.worker import Worker
from mirage.tracks.fanout import Frame
from mirage.tracks.pcm import to_s16_mono

log = logging.getLogger(__name__)

DEFAULT_SINK = "mirage_mic"


class DeviceMissing(Exception):
    """A virtual device is not there; the message says how to create it."""


def camera_help() -> str:
    system = platform.system()
    if system == "Linux":
        return (
            "create a v4l2loopback device once with\n"
            "  sudo apt install v4l2loopback-dkms   (or your distribution's package)\n"
            "  sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=Mirage\n"
            "then pick the 'Mirage' camera in the meeting app"
        )
    return (
        "install OBS Studio (https://obsproject.com), click 'Start Virtual Camera' once "
        "and close OBS; then pick 'OBS Virtual Camera' in the meeting app"
    )


def mic_help(sink: str) -> str:
    return (
        "create a virtual microphone once per login with\n"
        f"  pactl load-module module-null-sink sink_name={sink} "
        f"sink_properties=device.description={sink}\n"
        f"then pick 'Monitor of {sink}' as the microphone in the meeting app "
        "(PulseAudio, or PipeWire with pipewire-pulse)"
    )


class ThreadSink:
    """A writer (the engine's ``Worker``) fed through a buffer of at most ``capacity``
    frames (the oldest is dropped and counted when it is full). A write that raises
    stops the sink: the device is gone, and ``error`` says why."""

    name = "sink"

    def __init__(self, capacity: int) -> None:
        self._items: DropOldest[Frame] = DropOldest(max_items=capacity)
        self._cond = threading.Condition()
        self._closing = False
        self._worker = Worker(f"mirage-{self.name}", self._step, on_exit=self._finish)
        self.error: Exception | None = None
        self.dropped = 0
        self.written = 0

    def start(self) -> None:
        self._worker.start()

    def put(self, frame: Frame) -> None:
        """Hand over a frame (on the event loop; never blocks)."""
        with self._cond:
            if self._closing or self.error is not None:
                return
            self.dropped += self._items.append(frame)
            self._cond.notify()

    def _step(self) -> None:
        with self._cond:
            if not self._items and not self._closing:
                self._cond.wait(0.2)
            if not self._items:
                if self._closing:  # everything buffered is written: release the device
                    self._worker.request_stop()
                return
            frame = self._items.popleft()
        try:
            self._write(frame)
        except Exception as exc:
            self.error = exc
            log.error("%s stopped: %s", self.name, exc)
            self._worker.request_stop()
            return
        self.written += 1

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered, then release the device (blocking: call in a thread)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._worker.started:
            self._worker.join(timeout)
        else:
            self._finish()

    def _write(self, frame: Frame) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Release the device (in the writer thread, once)."""


# -- virtual camera ---------------------------------------------------------------------
CameraFactory = Callable[..., Any]


def _pyvirtualcam_camera(**kwargs: Any) -> Any:
    try:
        import pyvirtualcam
    except ImportError:
        raise DeviceMissing(
            "--virtual-camera needs pyvirtualcam: pip install 'mirage-avatar[client]'"
        ) from None
    return pyvirtualcam.Camera(fmt=pyvirtualcam.PixelFormat.RGB, **kwargs)


class VirtualCamera(ThreadSink):
    """Avatar frames into a virtual camera (pyvirtualcam: v4l2loopback on Linux, the
    OBS Virtual Camera on Windows/macOS) at a fixed size; other sizes are scaled."""

    name = "virtual-camera"

    def __init__(
        self,
        width: int = 512,
        height: int = 512,
        fps: float = 20.0,
        device: str | None = None,
        *,
        camera_factory: CameraFactory | None = None,
        **backend_options: Any,
    ) -> None:
        super().__init__(capacity=2)
        self.width, self.height, self.fps, self.device = width, height, fps, device
        self._factory = camera_factory or _pyvirtualcam_camera
        self._options = backend_options
        self._camera: Any = None

    def open(self) -> str:
        """Open the device (before connecting, so a missing one fails fast); its name."""
        try:
            self._camera = self._factory(
                width=self.width,
                height=self.height,
                fps=self.fps,
                device=self.device,
                **self._options,
            )
        except DeviceMissing:
            raise
        except Exception as exc:
            raise DeviceMissing(f"no virtual camera ({exc});\n{camera_help()}") from None
        self.start()
        return str(getattr(self._camera, "device", self.device or "virtual camera"))

    def _write(self, frame: Frame) -> None:
        assert isinstance(frame, VideoFrame)
        if frame.width != self.width or frame.height != self.height:
            frame = frame.reformat(width=self.width, height=self.height)
        self._camera.send(frame.to_ndarray(format="rgb24"))

    def _finish(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None


# -- virtual microphone -----------------------------------------------------------------
class OutputStream(Protocol):
    """The audio device boundary: blocking writes of s16le mono at 48 kHz."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


StreamFactory = Callable[[str | None], OutputStream]


class PacatStream:
    """Plays into a PulseAudio/PipeWire sink through ``pacat`` (no audio library needed)."""

    def __init__(self, device: str | None) -> None:
        sink = device or DEFAULT_SINK
        if shutil.which("pactl"):
            listed = subprocess.run(
                ["pactl", "list", "short", "sinks"], capture_output=True, text=True, timeout=5
            )
            names = {line.split("\t")[1] for line in listed.stdout.splitlines() if "\t" in line}
            if listed.returncode == 0 and sink not in names:
                raise DeviceMissing(f"no audio sink named {sink!r};\n{mic_help(sink)}")
        command = ["pacat", "--playback", f"--device={sink}", "--format=s16le"]
        command += [f"--rate={AUDIO_RATE}", "--channels=1", "--latency-msec=60"]
        command += ["--client-name=mirage", "--stream-name=mirage voice"]
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except BrokenPipeError:
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            raise DeviceMissing(f"pacat stopped: {err.strip()}") from None

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()


class SoundDeviceStream:
    """Plays into an output device through PortAudio (``sounddevice``)."""

    def __init__(self, device: str | None) -> None:
        try:
            import sounddevice
        except (ImportError, OSError) as exc:  # OSError: libportaudio2 is missing
            raise DeviceMissing(
                f"--virtual-mic needs sounddevice and PortAudio ({exc}): "
                "pip install 'mirage-avatar[client]' (and libportaudio2 on Linux)"
            ) from None
        try:
            self._stream = sounddevice.RawOutputStream(
                samplerate=AUDIO_RATE, channels=1, dtype="int16", device=device
            )
        except (ValueError, sounddevice.PortAudioError) as exc:
            raise DeviceMissing(f"no audio output {device!r} ({exc})") from None
        self._stream.start()

    def write(self, data: bytes) -> None:
        self._stream.write(data)

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


def default_stream(device: str | None) -> OutputStream:
    """``pacat`` on Linux when present (the null sink is PulseAudio's), else PortAudio."""
    if platform.system() == "Linux" and shutil.which("pacat"):
        return PacatStream(device)
    return SoundDeviceStream(device)


class VirtualMic(ThreadSink):
    """The converted voice into an audio device that meeting apps record from."""

    name = "virtual-mic"

    def __init__(
        self,
        device: str | None = DEFAULT_SINK,
        *,
        stream_factory: StreamFactory | None = None,
        max_ms: float = 200.0,
    ) -> None:
        super().__init__(capacity=max(2, int(max_ms // 20)))
        self.device = device
        self._factory = stream_factory or default_stream
        self._stream: OutputStream | None = None

    def open(self) -> str:
        self._stream = self._factory(self.device)
        self.start()
        return self.device or "default output"

    def _write(self, frame: Frame) -> None:
        assert isinstance(frame, AudioFrame) and self._stream is not None
        if frame.sample_rate != AUDIO_RATE:
            raise ValueError(f"audio at {frame.sample_rate} Hz; the mic runs at {AUDIO_RATE}")
        self._stream.write(to_s16_mono(frame).tobytes())

    def _finish(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
