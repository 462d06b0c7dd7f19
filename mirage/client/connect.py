"""Talking to a Mirage server: one connection (offer/answer over HTTP, the portrait,
stats, goodbye) and a ``Link`` that keeps one up, reconnecting with backoff.

The link's input and output hubs outlive its connections: sources keep feeding
the inputs and sinks keep reading the outputs while a connection is replaced,
so a reconnection is a gap in the media, not a restart of the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from mirage.client.hub import Hub, Timeline
from mirage.ice import rtc_ice_servers
from mirage.tracks.fanout import pump
from mirage.webrtc import aiortc_compat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientOptions:
    """What to ask a server for, and how to reach it."""

    server: str
    token: str | None = None
    face: str | None = None  # None: the server's default
    voice: str | None = None
    quality: str | int | None = None  # None/"auto": adaptive
    face_options: dict[str, Any] = field(default_factory=dict)
    voice_options: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None  # a portrait file sent to the session after connecting
    ice_servers: tuple[str, ...] = ()
    ice_hosts: tuple[str, ...] = ()  # host addresses ICE offers (() = every interface)
    http_timeout_s: float = 20.0

    @property
    def base_url(self) -> str:
        return self.server.rstrip("/")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def offer_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("face", "voice", "quality"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.face_options:
            out["face_options"] = dict(self.face_options)
        if self.voice_options:
            out["voice_options"] = dict(self.voice_options)
        return out


class Refused(Exception):
    """The server answered with an error. ``permanent`` ones (bad token, bad option,
    no face in the portrait) end the client; the rest are retried."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        return 400 <= self.status < 500 and self.status not in (404, 408, 429)


async def _error(resp: aiohttp.ClientResponse, what: str) -> Refused:
    try:
        body = await resp.json(content_type=None)
        message = body.get("error") or str(body)
    except (ValueError, AttributeError, aiohttp.ClientError):
        message = (await resp.text())[:200] or resp.reason or "no reason given"
    retry = resp.headers.get("Retry-After")
    try:
        retry_after = float(retry) if retry is not None else None
    except ValueError:
        retry_after = None
    return Refused(resp.status, f"{what}: {message}", retry_after)


@dataclass
class Backoff:
    """Exponential backoff with jitter: ``initial_s`` × ``factor``ⁿ, capped, each
    delay scaled by a random factor in [1 − jitter, 1 + jitter]."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 15.0
    jitter: float = 0.3
    attempt: int = 0

    def next_delay(self, at_least: float = 0.0) -> float:
        base = min(self.max_s, self.initial_s * self.factor**self.attempt)
        self.attempt += 1
        spread = random.uniform(1 - self.jitter, 1 + self.jitter)
        return max(at_least, base * spread)

    def reset(self) -> None:
        self.attempt = 0


async def fetch_ice_servers(
    http: aiohttp.ClientSession, options: ClientOptions
) -> list[RTCIceServer]:
    """``--ice-server`` URLs plus what the server hands out at ``GET /ice-servers`` (its
    STUN/TURN list with time-limited TURN credentials). A server without that route, or
    one that does not answer it, leaves just the command line's list."""
    servers = [RTCIceServer(urls=url) for url in options.ice_servers]
    url = f"{options.base_url}/ice-servers"
    try:
        async with http.get(url, headers=options.headers()) as resp:
            if resp.status != 200:
                return servers
            body = await resp.json()
    except (aiohttp.ClientError, ValueError):
        return servers
    entries = body.get("iceServers") if isinstance(body, dict) else None
    return servers + rtc_ice_servers(entries if isinstance(entries, list) else [])


async def peer_connection(http: aiohttp.ClientSession, options: ClientOptions) -> RTCPeerConnection:
    """A peer connection with the ICE servers of ``fetch_ice_servers``."""
    ice = await fetch_ice_servers(http, options)
    return RTCPeerConnection(RTCConfiguration(iceServers=ice))


async def post_offer(
    http: aiohttp.ClientSession,
    options: ClientOptions,
    pc: RTCPeerConnection,
    offer_options: dict[str, Any],
) -> tuple[str | None, RTCSessionDescription]:
    """Offer ``pc``'s tracks at ``POST /offer``: (the session id, the server's answer).
    The caller keeps the id before it applies the answer, so that a failure there can
    still say goodbye. Raises ``Refused`` (with the server's reason) or
    ``aiohttp.ClientError``."""
    with aiortc_compat.ice_hosts(options.ice_hosts):
        await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp": pc.localDescription.sdp, "type": "offer", "options": offer_options}
    url = f"{options.base_url}/offer"
    async with http.post(url, json=body, headers=options.headers()) as resp:
        if resp.status != 200:
            raise await _error(resp, "offer refused")
        try:
            answer = await resp.json(content_type=None)
            session_id = answer.get("session_id")
            desc = RTCSessionDescription(answer["sdp"], answer["type"])
        except (ValueError, TypeError, KeyError, AttributeError, aiohttp.ClientError):
            raise Refused(502, "the server's answer holds no SDP answer") from None
    return (str(session_id) if session_id is not None else None), desc


async def say_goodbye(
    http: aiohttp.ClientSession, options: ClientOptions, session_id: str | None
) -> None:
    """``DELETE /sessions/{id}``, best effort (3 s): the server frees the session now
    rather than when it notices the connection is gone."""
    if session_id is None:
        return
    url = f"{options.base_url}/sessions/{session_id}"
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        async with http.delete(
            url, headers=options.headers(), timeout=aiohttp.ClientTimeout(total=3)
        ):
            pass


class Connection:
    """One peer connection to the server: the offer, the portrait, stats, DELETE."""

    def __init__(
        self,
        options: ClientOptions,
        http: aiohttp.ClientSession,
        inputs: tuple[Hub | None, Hub | None],
        outputs: tuple[Hub, Hub],
    ) -> None:
        self.options = options
        self._http = http
        self._inputs = inputs
        self._outputs = outputs
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # replaced in open()
        self.session_id: str | None = None
        self.ended = asyncio.Event()  # the connection failed or closed
        self.end_reason = ""
        self._senders: list[MediaStreamTrack] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    async def open(self) -> None:
        """Offer, answer, portrait. Raises ``Refused`` or ``aiohttp.ClientError``."""
        await self.pc.close()  # never used: made in __init__ so ``pc`` always exists
        self.pc = pc = await peer_connection(self._http, self.options)
        for hub in self._inputs:
            if hub is not None:
                track = hub.subscribe()
                self._senders.append(track)
                pc.addTrack(track)
        if not self._senders:
            raise ValueError("nothing to send: neither video nor audio input")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            hub = self._outputs[0] if track.kind == "video" else self._outputs[1]
            self._tasks.append(asyncio.create_task(pump(track, hub, end=False)))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.end(f"connection {pc.connectionState}")

        self.session_id, answer = await post_offer(
            self._http, self.options, pc, self.options.offer_options()
        )
        await pc.setRemoteDescription(answer)
        aiortc_compat.use_low_latency_receivers(pc)
        if self.options.reference:
            await self.send_reference(self.options.reference)

    async def send_reference(self, path: str) -> None:
        """Upload the portrait to this session (the server checks it has a face)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise Refused(400, f"cannot read portrait {path!r}: {exc.strerror}") from None
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        url = f"{self.options.base_url}/reference"
        headers = {**self.options.headers(), "Content-Type": ctype}
        params = {"session_id": self.session_id or ""}
        async with self._http.post(url, data=data, headers=headers, params=params) as resp:
            if resp.status != 200:
                raise await _error(resp, f"portrait {Path(path).name} refused")

    def end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()

    async def server_stats(self) -> dict[str, Any] | None:
        """The server's view of this session (GET /sessions/{id}), or None."""
        if self.session_id is None:
            return None
        url = f"{self.options.base_url}/sessions/{self.session_id}"
        try:
            async with self._http.get(url, headers=self.options.headers()) as resp:
                if resp.status == 404:
                    self.end("the server ended the session")
                if resp.status != 200:
                    return None
                stats: dict[str, Any] = await resp.json()
                return stats
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None

    async def round_trip_s(self) -> float | None:
        """Network round trip from RTCP receiver reports (seconds), or None yet."""
        try:
            report = await self.pc.getStats()
        except Exception:  # a closing connection
            return None
        rtts = [
            s.roundTripTime
            for s in report.values()
            if getattr(s, "type", "") == "remote-inbound-rtp" and s.roundTripTime is not None
        ]
        return max(rtts) if rtts else None

    async def close(self, delete: bool = True) -> None:
        """Stop sending, say goodbye (DELETE, best effort) and close the connection."""
        if self._closed:
            return
        self._closed = True
        self.end("closed by the client")
        for track in self._senders:
            track.stop()
        if delete:
            await say_goodbye(self._http, self.options, self.session_id)
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


Report = Callable[[str], None]


class Link:
    """Keeps one connection to the server up while ``run`` runs: input hubs in,
    output hubs (stable across reconnections) out."""

    def __init__(
        self,
        options: ClientOptions,
        inputs: tuple[Hub | None, Hub | None],
        *,
        timeline: Timeline | None = None,
        report: Report | None = None,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        media_timeout_s: float = 5.0,
    ) -> None:
        self.options = options
        self.inputs = inputs
        timeline = timeline or next((h.timeline for h in inputs if h is not None), Timeline())
        self.video = Hub("video", timeline)
        self.audio = Hub("audio", timeline)
        self.report: Report = report or (lambda line: log.info("%s", line))
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.media_timeout_s = media_timeout_s
        self.connection: Connection | None = None
        self.state = "new"
        self.connects = 0  # successful connections so far
        self.connected = asyncio.Event()  # set while a connection carries media

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, and reconnect after every failure until ``stop`` is set.
        Raises ``Refused`` at once for a permanent refusal (bad token, bad option)."""
        timeout = aiohttp.ClientTimeout(total=self.options.http_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stop.is_set():
                started = time.monotonic()
                reason, retry_after = await self._one(http, stop)
                if stop.is_set():
                    break
                if all(hub.ended for hub in self.inputs if hub is not None):
                    self.report(f"{reason}; the inputs ended, not reconnecting")
                    break
                if not self.reconnect:
                    raise ConnectionError(reason)
                if time.monotonic() - started > 30.0:
                    self.backoff.reset()  # it had been working: start again quickly
                delay = self.backoff.next_delay(retry_after or 0.0)
                self.state = "waiting"
                self.report(f"{reason}; reconnecting in {delay:.1f} s")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        self.state = "closed"

    async def _one(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> tuple[str, float]:
        """One connection, start to end: (why it ended, the server's Retry-After)."""
        self.state = "connecting"
        conn = Connection(self.options, http, self.inputs, (self.video, self.audio))
        self.connection = conn
        try:
            await conn.open()
        except BaseException as exc:
            self.connection = None
            await conn.close(delete=conn.session_id is not None)
            if isinstance(exc, Refused):
                if exc.permanent:
                    self.state = "refused"
                    raise
                return str(exc), exc.retry_after or 0.0
            if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, OSError)):
                why = str(exc) or type(exc).__name__
                return f"cannot reach {self.options.base_url}: {why}", 0.0
            raise
        self.connects += 1
        self.state = "connected"
        self.report(f"connected: session {conn.session_id}")
        watchdog = asyncio.create_task(self._watch_media(conn))
        waiters = [asyncio.create_task(conn.ended.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watchdog, *waiters):
                task.cancel()
            self.connected.clear()
            reason = conn.end_reason
            await conn.close()
            self.connection = None
        return reason or "closed", 0.0

    async def _watch_media(self, conn: Connection) -> None:
        """End a connection that stops carrying media (a server that vanished
        without a word leaves the peer connection 'connected' for a long while)."""
        last_count = -1
        last_change = time.monotonic()
        while not conn.ended.is_set():
            await asyncio.sleep(0.25)
            count = self.video.frames + self.audio.frames
            now = time.monotonic()
            if count != last_count:
                if last_count >= 0:
                    self.connected.set()
                last_count, last_change = count, now
            elif now - last_change > self.media_timeout_s:
                conn.end(f"no media from the server for {now - last_change:.1f} s")

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        self.video.end()
        self.audio.end()
