"""The desktop client behind ``mirage client``: local camera and microphone (or a
file) → Mirage server → virtual camera, virtual microphone and/or an mp4.

Sinks open before the first connection (a missing virtual device fails fast
with its setup line); the link then reconnects on its own; a stats line goes to
stderr every second; SIGINT/SIGTERM (or ``duration_s``) end it cleanly: the
connection closed, the session deleted, the recording finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from mirage.client.connect import Backoff, ClientOptions, Link, Refused
from mirage.client.hub import Hub, Timeline
from mirage.client.record import Recorder
from mirage.client.sinks import DeviceMissing, ThreadSink, VirtualCamera, VirtualMic
from mirage.client.sources import Source, SourceError, open_devices, open_file

EXIT_OK, EXIT_DEVICE, EXIT_REFUSED = 0, 1, 2


@dataclass
class DesktopOptions:
    connection: ClientOptions
    input: str | None = None  # a media file instead of the devices
    loop: bool = False
    camera: str = "0"
    mic: str = "default"
    send_video: bool = True
    send_audio: bool = True
    virtual_camera: bool = False
    camera_device: str | None = None  # e.g. /dev/video10; None: the first free one
    virtual_mic: bool = False
    mic_sink: str | None = "mirage_mic"
    record: str | None = None
    size: int = 512  # virtual camera and recording size
    fps: float = 20.0
    duration_s: float | None = None
    stats_every_s: float = 1.0
    # Device boundaries (tests replace them).
    camera_factory: Callable[..., Any] | None = None
    stream_factory: Callable[..., Any] | None = None
    backoff: Backoff = field(default_factory=Backoff)


class StatsLine:
    """One line a second: what is sent and received, delays, connection state."""

    def __init__(self, link: Link, out: TextIO) -> None:
        self.link = link
        self.out = out
        self.lines = 0

    async def run(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            self.out.write(await self.line() + "\n")
            self.out.flush()
            self.lines += 1

    async def line(self) -> str:
        link = self.link
        sent = link.inputs[0].meter.rate() if link.inputs[0] is not None else 0.0
        parts = [
            f"[{link.state}]",
            f"sent {sent:4.1f} fps",
            f"recv {link.video.meter.rate():4.1f} fps",
            f"audio {link.audio.meter.rate():3.0f} frames/s",
        ]
        conn = link.connection
        if conn is not None:
            rtt = await conn.round_trip_s()
            stats = await conn.server_stats()
            if rtt is not None:
                parts.append(f"rtt {rtt * 1000:.0f} ms")
            if stats:
                p95 = stats.get("latency_p95_ms", {}).get("video")
                if p95 is not None:
                    parts.append(f"server p95 {p95:.0f} ms")
                quality = stats.get("quality", {}).get("level")
                if quality:
                    parts.append(f"quality {quality}")
        return "  ".join(parts)


def _open_sinks(options: DesktopOptions, report: Callable[[str], None]) -> list[ThreadSink]:
    sinks: list[ThreadSink] = []
    try:
        if options.virtual_camera:
            camera = VirtualCamera(
                options.size,
                options.size,
                options.fps,
                options.camera_device,
                camera_factory=options.camera_factory,
            )
            report(f"virtual camera: {camera.open()}")
            sinks.append(camera)
        if options.virtual_mic:
            mic = VirtualMic(options.mic_sink, stream_factory=options.stream_factory)
            report(f"virtual microphone: {mic.open()}")
            sinks.append(mic)
        if options.record:
            recorder = Recorder(
                options.record, width=options.size, height=options.size, fps=options.fps
            )
            report(f"recording to {recorder.open()}")
            sinks.append(recorder)
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


async def run_client(
    options: DesktopOptions, err: TextIO | None = None, stop: asyncio.Event | None = None
) -> int:
    """Run until ``stop`` is set, a signal, ``duration_s`` or the end of a file played
    once; the exit status (0 after a clean stop)."""
    out = err or sys.stderr

    def report(line: str) -> None:
        out.write(f"mirage client: {line}\n")
        out.flush()

    timeline = Timeline()
    inputs = (
        Hub("video", timeline) if options.send_video else None,
        Hub("audio", timeline) if options.send_audio else None,
    )
    loop = asyncio.get_running_loop()
    try:
        sinks = await loop.run_in_executor(None, _open_sinks, options, report)
    except (DeviceMissing, OSError) as exc:
        report(str(exc))
        return EXIT_DEVICE
    source: Source | None = None
    try:
        if options.input:
            source = open_file(options.input, inputs, loop=options.loop)
        else:
            camera = options.camera if options.send_video else None
            source = open_devices(camera, options.mic if options.send_audio else None, inputs)
    except SourceError as exc:
        report(str(exc))
        await loop.run_in_executor(None, _close_sinks, sinks)
        return EXIT_DEVICE
    if source.video is None and source.audio is None:
        report("nothing to send: no video and no audio input")
        await loop.run_in_executor(None, _close_sinks, sinks)
        return EXIT_DEVICE
    link = Link(
        options.connection,
        (source.video, source.audio),
        timeline=timeline,
        report=report,
        backoff=options.backoff,
    )
    for sink in sinks:
        hub = link.audio if isinstance(sink, VirtualMic) else link.video
        hub.listen(sink.put)
        if isinstance(sink, Recorder):
            link.audio.listen(sink.put)

    stop = stop or asyncio.Event()
    handled = _on_signals(loop, stop)
    stats = StatsLine(link, out)
    stats_task = asyncio.create_task(stats.run(options.stats_every_s))
    timer = None
    if options.duration_s is not None:
        timer = loop.call_later(options.duration_s, stop.set)
    if options.input and not options.loop:
        _stop_when_ended(source, stop)
    status = EXIT_OK
    try:
        await link.run(stop)
    except Refused as exc:
        report(f"giving up: {exc}")
        status = EXIT_REFUSED
    finally:
        if timer is not None:
            timer.cancel()
        stats_task.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
        await link.close()
        await source.close()
        await loop.run_in_executor(None, _close_sinks, sinks)
    for sink in sinks:
        if sink.error is not None:
            report(f"{sink.name} failed: {sink.error}")
            status = status or EXIT_DEVICE
    report(f"stopped after {link.connects} connection(s)")
    return status


def _close_sinks(sinks: list[ThreadSink]) -> None:
    for sink in sinks:
        sink.close()


def _on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> list[signal.Signals]:
    """Ctrl-C and SIGTERM end the client cleanly (where the loop supports handlers)."""
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    return handled


def _stop_when_ended(source: Source, stop: asyncio.Event) -> None:
    """A file played once: stop shortly after its last frame left."""

    async def watch() -> None:
        hubs = [h for h in (source.video, source.audio) if h is not None]
        while not all(h.ended for h in hubs):
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the last frames' round trip
        stop.set()

    task = asyncio.create_task(watch())
    stop_task = asyncio.ensure_future(stop.wait())
    stop_task.add_done_callback(lambda _: task.cancel())
