"""The relay API for bots: aiortc tracks in (a meeting bot's incoming camera and
microphone, a file, a synthetic source), transformed aiortc tracks out.

Two interchangeable relays, one shape::

    async with MirageRelay("http://gpu-box:7860", token=...) as relay:   # over WebRTC
        video, audio = await relay.transform(camera_track, mic_track)

    async with LocalRelay(face="warp", voice="dsp") as relay:            # in-process
        video, audio = await relay.transform(camera_track, mic_track)

Either input may be None (its output is then None). The returned tracks are
ordinary ``MediaStreamTrack`` s: add them to the bot's own peer connection, a
``MediaRecorder`` or read them with ``recv()``. Inputs are drained as fast as
they deliver and outputs are bounded (newest video frame, ≤200 ms of audio),
so a slow reader drops frames rather than building latency. Leaving the
``async with`` stops everything and releases the models.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from mirage.client.connect import Backoff, ClientOptions, Link, Refused
from mirage.client.hub import Hub, Timeline
from mirage.config import Settings
from mirage.engine.adapt import find_level
from mirage.engine.backends import (
    Backends,
    GuardPolicy,
    build_backends,
    close_backends,
    supervise,
    wait_backends_closed,
)
from mirage.engine.voicechain import validate_voice
from mirage.metrics import Metrics
from mirage.models import registry
from mirage.models.base import Model
from mirage.models.registry import BuildContext
from mirage.tracks.audio import VoiceAudioTrack
from mirage.tracks.factory import avatar_track, playout_clock, voice_track
from mirage.tracks.fanout import pump
from mirage.tracks.video import AvatarVideoTrack

Tracks = tuple[MediaStreamTrack | None, MediaStreamTrack | None]


class _Relay:
    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        raise NotImplementedError


class MirageRelay(_Relay):
    """Transforms tracks through a Mirage server over WebRTC, reconnecting on its own
    (the returned tracks survive reconnections). ``options`` are ``ClientOptions``
    fields: face, voice, quality, face_options, voice_options, reference (a portrait
    file), ice_servers, ice_hosts."""

    def __init__(
        self,
        server_url: str,
        *,
        token: str | None = None,
        reconnect: bool = True,
        connect_timeout_s: float = 30.0,
        **options: Any,
    ) -> None:
        self.options = ClientOptions(server_url, token=token, **options)
        self.reconnect = reconnect
        self.connect_timeout_s = connect_timeout_s
        self.link: Link | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._outputs: list[MediaStreamTrack] = []
        self._runner: asyncio.Task[None] | None = None

    async def transform(
        self, video: MediaStreamTrack | None, audio: MediaStreamTrack | None
    ) -> Tracks:
        """Start relaying; returns once the server answered (raises ``Refused`` if it
        refuses for good, ``TimeoutError`` if it cannot be reached in time)."""
        if self.link is not None:
            raise RuntimeError("one transform per relay: make another relay for more tracks")
        if video is None and audio is None:
            raise ValueError("nothing to transform: both tracks are None")
        timeline = Timeline()
        hubs = (
            Hub("video", timeline) if video is not None else None,
            Hub("audio", timeline) if audio is not None else None,
        )
        for track, hub in ((video, hubs[0]), (audio, hubs[1])):
            if track is not None and hub is not None:
                self._tasks.append(asyncio.create_task(pump(track, hub)))
        link = Link(
            self.options, hubs, timeline=timeline, reconnect=self.reconnect, backoff=Backoff()
        )
        self.link = link
        outputs = (
            link.video.subscribe() if video is not None else None,
            link.audio.subscribe() if audio is not None else None,
        )
        self._outputs = [t for t in outputs if t is not None]
        runner = asyncio.create_task(link.run(self._stop))
        self._runner = runner
        self._tasks.append(runner)
        first = asyncio.create_task(_first_connection(link))
        try:
            await asyncio.wait(
                [runner, first], timeout=self.connect_timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            first.cancel()
        if runner.done():
            runner.result()  # raises Refused / ConnectionError
        if link.connects == 0:
            await self.close()
            raise TimeoutError(f"no connection to {self.options.base_url} in time")
        return outputs

    async def close(self) -> None:
        """Stop the link (it closes its connection and deletes the session), then the rest."""
        self._stop.set()
        for task in self._tasks:
            if task is not self._runner:
                task.cancel()
        if self._runner is not None:
            with contextlib.suppress(asyncio.TimeoutError, Refused, ConnectionError):
                await asyncio.wait_for(asyncio.shield(self._runner), 10.0)
        for track in self._outputs:
            track.stop()
        if self.link is not None:
            await self.link.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Refused, ConnectionError):
                await task


async def _first_connection(link: Link) -> None:
    while link.connects == 0:
        await asyncio.sleep(0.05)


class LocalRelay(_Relay):
    """Transforms tracks in this process with the engine's own tracks and the
    registry's backends: no server, no WebRTC between the bot and the models."""

    def __init__(
        self,
        face: str = "warp",
        voice: str = "dsp",
        *,
        reference: np.ndarray | str | Path | None = None,
        face_options: dict[str, Any] | None = None,
        voice_options: dict[str, Any] | None = None,
        quality: str | int | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.face, self.voice = face, voice
        self.reference = reference
        self.face_options = dict(face_options or {})
        self.voice_options = dict(voice_options or {})
        self.pinned = None if quality in (None, "auto") else find_level(quality)  # type: ignore[arg-type]
        self.metrics = Metrics()  # this relay's own registry: nothing global
        self.video: AvatarVideoTrack | None = None
        self.audio: VoiceAudioTrack | None = None
        self._models: list[Model] = []

    def _build(self) -> Backends:
        s = self.settings
        testing = s.test_backends  # fault-injection backends only behind the test-only switch
        face_options = registry.validate("face", self.face, self.face_options, testing=testing)
        voice_options = validate_voice(self.voice, self.voice_options, testing=testing)
        backends = build_backends(
            self.face,
            self.voice,
            face_options,
            voice_options,
            _portrait(self.reference),
            BuildContext(s.models_dir),
            s.voice_preset,
        )
        # The server's guard (deadline, fallback, restart): a hung model falls back here too.
        supervise(backends, GuardPolicy.of(s), "relay", self.metrics)
        self._models += [backends.animator, backends.converter]
        return backends

    async def transform(
        self, video: MediaStreamTrack | None, audio: MediaStreamTrack | None
    ) -> Tracks:
        """Make the models (off the loop), start the tracks; returns them."""
        if self.video is not None or self.audio is not None:
            raise RuntimeError("one transform per relay: make another relay for more tracks")
        loop = asyncio.get_running_loop()
        backends = await loop.run_in_executor(None, self._build)
        clock = playout_clock(self.settings)
        if video is not None:
            self.video = avatar_track(
                video, backends, self.settings, clock, self.metrics, self.pinned
            )
            self.video.start()
        if audio is not None:
            self.audio = voice_track(audio, backends, self.settings, clock, self.metrics)
            self.audio.start()
        return self.video, self.audio

    async def close(self) -> None:
        models, self._models = self._models, []
        # First the models (wakes a worker waiting on a hung call), as a session does.
        close_backends(models)
        tracks = [t for t in (self.video, self.audio) if t is not None]
        for track in tracks:
            track.stop()
        await asyncio.gather(*(t.wait_stopped() for t in tracks))  # off the loop
        await asyncio.get_running_loop().run_in_executor(None, wait_backends_closed, models)


def _portrait(reference: np.ndarray | str | Path | None) -> np.ndarray:
    if reference is None:
        from mirage.models.avatar.reference import default_reference

        return default_reference()
    if isinstance(reference, np.ndarray):
        return reference
    from mirage.images import ImageLimits, decode_image

    return decode_image(Path(reference).read_bytes(), ImageLimits())
