"""WHIP ingest and WHEP egress, spoken exactly as a WHIP encoder / WHEP player does:
plain HTTP with ``application/sdp`` bodies, 201 + Location, DELETE on the resource."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urljoin

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from mirage.client.probe import BLOCK, BeepMicrophone, Probe, SyntheticCamera, read_id
from mirage.config import Settings
from mirage.metrics import Metrics
from mirage.state import SERVER
from mirage.webrtc import aiortc_compat, whep
from mirage.webrtc.fanout import MAX_WAIT_S, OUTPUT_BOUND, Fanout, Hub
from mirage.webrtc.httpsdp import ice_server_links
from tests.server_fixtures import StartServer, base_url

SDP = "application/sdp"


async def until(done: Callable[[], bool], timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def local_offer(pc: RTCPeerConnection) -> str:
    with aiortc_compat.ice_hosts(("127.0.0.1",)):
        await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


async def post_sdp(
    url: str, sdp: str, headers: dict[str, str] | None = None
) -> tuple[aiohttp.ClientResponse, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=sdp, headers={"Content-Type": SDP, **(headers or {})}) as resp,
    ):
        return resp, await resp.text()


async def request(method: str, url: str, **kw: Any) -> tuple[aiohttp.ClientResponse, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp, body


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0.001)


class Publisher:
    """A WHIP encoder: send-only synthetic camera + microphone."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.camera = SyntheticCamera(512, 20.0)
        self.mic = BeepMicrophone()
        self.pc.addTransceiver(self.camera, direction="sendonly")
        self.pc.addTransceiver(self.mic, direction="sendonly")

    async def publish(self, url: str, headers: dict[str, str] | None = None) -> Any:
        resp, answer = await post_sdp(url, await local_offer(self.pc), headers)
        if resp.status == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return resp, answer


class Player:
    """A WHEP player: receive-only video + audio; records what arrives."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.ids: list[int] = []
        self.last_image: np.ndarray | None = None
        self.audio_rms: list[float] = []
        self.ended: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame: Any = await track.recv()
                if track.kind == "video":
                    img = frame.to_ndarray(format="rgb24")
                    frame_id = read_id(img)
                    if frame_id is not None:
                        self.ids.append(frame_id)
                        self.last_image = img
                else:
                    pcm = frame.to_ndarray().astype(np.float32) / 32768.0
                    self.audio_rms.append(float(np.sqrt(np.mean(pcm**2))))
        except MediaStreamError:
            self.ended.add(track.kind)

    async def watch(self, url: str) -> Any:
        resp, answer = await post_sdp(url, await local_offer(self.pc))
        if resp.status == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return resp, answer

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


def inverted(img: np.ndarray) -> bool:
    """The probe's reference cells (0 white, 1 black) came back swapped."""
    scale = img.shape[0] / 512
    q = int(BLOCK * scale) // 4
    cell = int(BLOCK * scale)
    white = img[q : cell - q, q : cell - q].mean()
    black = img[q : cell - q, cell + q : 2 * cell - q].mean()
    return bool(white < 60 and black > 190)


def dropped(server: TestServer, stage: str) -> float:
    sample = server.app[SERVER].metrics.frames_dropped.labels("video", stage)
    return float(sample._value.get())


async def test_whip_publish_whep_watch_and_delete(start_server: StartServer) -> None:
    server = await start_server(max_viewers_per_session=2)
    url = base_url(server)
    publisher, players = Publisher(), [Player(), Player(), Player()]
    try:
        resp, answer = await publisher.publish(f"{url}/whip?face=invert")
        assert resp.status == 201, answer
        assert resp.headers["Content-Type"] == SDP and answer.startswith("v=0")
        location = resp.headers["Location"]
        assert location.startswith("/whip/")
        resource = urljoin(f"{url}/whip", location)
        session_id = location.rsplit("/", 1)[1]
        session = server.app[SERVER].sessions[session_id]
        assert session.stats()["face"] == "invert"

        # Nobody watches yet: the session's hub still pulls the output at its pace,
        # so rendered frames do not back up in the output delay line.
        assert await until(lambda: session.video is not None and session.video.frames_out > 20, 15)
        assert dropped(server, "output") < 3
        assert session.stats()["viewers"] == 0

        resp_a, answer_a = await players[0].watch(f"{url}/whep/{session_id}")
        resp_b, _ = await players[1].watch(f"{url}/whep/{session_id}")
        assert resp_a.status == 201 and resp_b.status == 201, answer_a
        assert resp_a.content_type == SDP and answer_a.startswith("v=0")
        viewer_a = resp_a.headers["Location"]
        assert viewer_a.startswith(f"/whep/{session_id}/")
        assert viewer_a != resp_b.headers["Location"]
        # The third viewer is over max_viewers_per_session.
        resp_c, body_c = await players[2].watch(f"{url}/whep/{session_id}")
        assert resp_c.status == 503 and resp_c.headers["Retry-After"] == "5"
        assert "2 viewers" in body_c
        assert session.stats()["viewers"] == 2

        a, b = players[0], players[1]
        assert await until(
            lambda: len(a.ids) >= 10 and len(b.ids) >= 10 and max(a.audio_rms, default=0) > 0.1,
            20,
        ), f"viewers got {len(a.ids)}/{len(b.ids)} frames, audio {max(a.audio_rms, default=0)}"
        assert a.last_image is not None and inverted(a.last_image), "frames not transformed"
        assert a.ids[-1] > a.ids[0]

        # PATCH (trickle / ICE restart) is not supported: 405 with Allow.
        resp, body = await request("PATCH", resource, data="a=end-of-candidates")
        assert resp.status == 405 and resp.headers["Allow"] == "DELETE"
        assert body["kind"] == "MethodNotAllowed"
        resp, _ = await request("PATCH", urljoin(url, viewer_a), data="x")
        assert resp.status == 405

        # A viewer leaving ends its connection only.
        resp, body = await request("DELETE", urljoin(url, viewer_a))
        assert resp.status == 200 and body["closed"] is True
        assert session.stats()["viewers"] == 1
        assert await until(lambda: a.ended == {"video", "audio"}, 10), a.ended
        seen_b = len(b.ids)
        assert await until(lambda: len(b.ids) > seen_b + 5, 10), "the other viewer stalled"
        assert session_id in server.app[SERVER].sessions
        resp, _ = await request("DELETE", urljoin(url, viewer_a))
        assert resp.status == 404

        # Ending the WHIP session ends its viewers.
        resp, body = await request("DELETE", resource)
        assert resp.status == 200 and body == {"session_id": session_id, "closed": True}
        assert session_id not in server.app[SERVER].sessions
        assert await until(lambda: b.ended == {"video", "audio"}, 10), b.ended
        resp, _ = await request("DELETE", resource)
        assert resp.status == 404
    finally:
        for player in players:
            await player.close()
        await publisher.pc.close()


async def test_whip_and_whep_errors(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whep, "CONNECT_TIMEOUT_S", 0.5)
    server = await start_server(max_sessions=1, max_offer_bytes=8 * 1024)
    url = base_url(server)
    pcs: list[RTCPeerConnection] = []

    async def whip(
        content_type: str, body: str | bytes | AsyncIterator[bytes], query: str = ""
    ) -> tuple[aiohttp.ClientResponse, Any]:
        return await request(
            "POST", f"{url}/whip{query}", data=body, headers={"Content-Type": content_type}
        )

    try:
        resp, body = await request("OPTIONS", f"{url}/whip")
        assert resp.status == 204 and resp.headers["Accept-Post"] == SDP
        resp, body = await whip("text/plain", "v=0\r\n")
        assert resp.status == 415 and body["kind"] == "UnsupportedMediaType"
        assert "application/sdp" in body["error"]
        resp, body = await whip("application/json", '{"sdp": "v=0", "type": "offer"}')
        assert resp.status == 415
        resp, body = await whip(SDP, "hello")
        assert resp.status == 400 and "starting with 'v=0'" in body["error"]
        resp, body = await whip(SDP, b"v=0\xff\xfe")
        assert resp.status == 400 and "UTF-8" in body["error"]
        resp, body = await whip(SDP, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nnonsense\r\n")
        assert resp.status == 400 and body["kind"] == "BadOffer"
        resp, body = await whip(SDP, "v=0\r\n" + "a=x\r\n" * 4000)
        assert resp.status == 413
        resp, body = await whip(SDP, chunked(b"v=0\r\n" + b"a=x\r\n" * 4000, 1000))
        assert resp.status == 413 and body["kind"] == "TooLarge"

        publisher = Publisher()
        pcs.append(publisher.pc)
        offer = await local_offer(publisher.pc)
        resp, body = await whip(SDP, offer, "?face=nope")
        assert resp.status == 400 and "unknown face backend 'nope'" in body["error"]
        resp, body = await whip(SDP, offer, "?colour=blue")
        assert resp.status == 400 and "colour" in body["error"]
        resp, body = await whip(SDP, offer, "?quality=ultra")
        assert resp.status == 400
        resp, body = await whip(SDP, offer, "?voice=dsp&denoise=loud")
        assert resp.status == 400 and "denoise must be" in body["error"]
        assert server.app[SERVER].sessions == {}

        # Chunked (no Content-Length), in pieces: read whole, within the limit.
        resp, answer = await whip(
            SDP, chunked(offer.encode(), 300), "?quality=0&voice=dsp&preset=deep&denoise=max"
        )
        assert resp.status == 201, answer
        assert resp.headers["Content-Type"] == SDP and answer.startswith("v=0")
        session_id = resp.headers["Location"].rsplit("/", 1)[1]
        assert server.app[SERVER].sessions[session_id].stats()["quality"]["pinned"]
        chain = server.app[SERVER].sessions[session_id].backends.converter.guard.model
        assert chain.level == 4  # the noise suppressor's strength from the query
        # max_sessions=1: the next publisher is refused until this one ends.
        other = Publisher()
        pcs.append(other.pc)
        resp, body = await whip(SDP, await local_offer(other.pc))
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
        assert body["kind"] == "ServerFull"

        resp, body = await request("OPTIONS", f"{url}/whep/{session_id}")
        assert resp.status == 204 and resp.headers["Accept-Post"] == SDP
        player = Player()
        pcs.append(player.pc)
        viewer_offer = await local_offer(player.pc)
        resp, body = await request(
            "POST", f"{url}/whep/{session_id}", data=viewer_offer, headers={"Content-Type": "x/y"}
        )
        assert resp.status == 415
        resp, body = await post_sdp(f"{url}/whep/{session_id}", "v=0\r\nbroken\r\n")
        assert resp.status == 400
        resp, body = await post_sdp(f"{url}/whep/{'0' * 32}", viewer_offer)
        assert resp.status == 404 and "no session" in body
        for method, path in [
            ("DELETE", f"/whip/{'0' * 32}"),
            ("PATCH", f"/whip/{'0' * 32}"),
            ("DELETE", f"/whep/{session_id}/nobody"),
            ("PATCH", f"/whep/{session_id}/nobody"),
            ("OPTIONS", f"/whep/{'0' * 32}"),
        ]:
            resp, body = await request(method, url + path)
            assert resp.status == 404, (method, path, body)
            assert body["kind"] in ("NoSuchSession", "NoSuchViewer")
        resp, _ = await request("GET", f"{url}/whip")
        assert resp.status == 405
        session = server.app[SERVER].sessions[session_id]
        assert session.stats()["viewers"] == 0
        # A player that never completes its side is dropped after CONNECT_TIMEOUT_S.
        resp, body = await post_sdp(f"{url}/whep/{session_id}", viewer_offer)
        assert resp.status == 201, body
        assert session.stats()["viewers"] == 1
        assert await until(lambda: session.stats()["viewers"] == 0, 5)
        assert session_id in server.app[SERVER].sessions
        resp, _ = await request("DELETE", f"{url}/whip/{session_id}")
        assert resp.status == 200
    finally:
        for pc in pcs:
            await pc.close()


async def test_whip_needs_the_bearer_token_when_auth_is_on(start_server: StartServer) -> None:
    token = "s3cret"
    server = await start_server(token=token)
    url = base_url(server)
    publisher = Publisher()
    try:
        offer = await local_offer(publisher.pc)
        resp, body = await post_sdp(f"{url}/whip", offer)
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        resp, body = await post_sdp(f"{url}/whip", offer, {"Authorization": "Bearer wrong"})
        assert resp.status == 401
        assert server.app[SERVER].sessions == {}
        auth = {"Authorization": f"Bearer {token}"}
        resp, body = await post_sdp(f"{url}/whip", offer, auth)
        assert resp.status == 201, body
        resource = urljoin(f"{url}/whip", resp.headers["Location"])
        resp, _ = await request("DELETE", resource)
        assert resp.status == 401
        resp, _ = await request("DELETE", resource, headers=auth)
        assert resp.status == 200
    finally:
        await publisher.pc.close()


async def test_whep_watches_a_page_session_beside_its_own_peer(start_server: StartServer) -> None:
    """/whep/latest finds the session; its own peer and the viewer both get the
    output; a viewer that vanishes without DELETE is dropped, the session goes on."""
    server = await start_server()
    url = base_url(server)
    probe = Probe(url, options={"face": "invert"})
    player = Player()
    try:
        await probe.connect()
        resp, body = await player.watch(f"{url}/whep/latest")
        assert resp.status == 201, body
        assert resp.headers["Location"].startswith(f"/whep/{probe.session_id}/")
        assert probe.session_id is not None
        session = server.app[SERVER].sessions[probe.session_id]
        assert await until(
            lambda: len(player.ids) >= 10 and len(probe.received.video_ids) >= 10, 20
        )
        assert player.last_image is not None and inverted(player.last_image)
        assert session.stats()["viewers"] == 1
        await player.pc.close()  # no DELETE: the connection's end is enough
        assert await until(lambda: session.stats()["viewers"] == 0, 10)
        seen = len(probe.received.video_ids)
        assert await until(lambda: len(probe.received.video_ids) > seen + 5, 10)
        assert probe.session_id in server.app[SERVER].sessions
    finally:
        await player.close()
        await probe.close()


def test_ice_servers_are_offered_as_link_headers() -> None:
    settings = Settings(
        ice_servers=("stun:stun.example.net:3478",),
        turn_urls=("turn:turn.example.net:3478?transport=udp",),
        turn_secret="k",
    )
    stun, relay = ice_server_links(settings)
    assert stun == '<stun:stun.example.net:3478>; rel="ice-server"'
    assert relay.startswith('<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; ')
    assert relay.endswith('; credential-type="password"')
    # The credentials, recomputed with the server's secret (coturn's REST scheme).
    found = re.search(r'; username="(\d+):mirage-whip"; credential="([^"]+)"', relay)
    assert found is not None, relay
    expiry, credential = int(found[1]), found[2]
    assert time.time() + 3600 - 60 <= expiry <= time.time() + 3600
    digest = hmac.new(b"k", f"{expiry}:mirage-whip".encode(), hashlib.sha1).digest()
    assert credential == base64.b64encode(digest).decode()
    assert ice_server_links(Settings()) == []


class CountingSource(MediaStreamTrack):
    """An output track stand-in: a new frame each call (a track never changes a frame
    it returned: tests/test_sync.py checks the avatar track), its pts counting up."""

    def __init__(self, kind: str, frames: int) -> None:
        super().__init__()
        self.kind = kind
        self.left = frames
        self.pts = 0
        self.sent: dict[int, Any] = {}

    async def recv(self) -> Any:
        await asyncio.sleep(0.001)
        if self.left == 0:
            raise MediaStreamError
        self.left -= 1
        self.pts += 1
        frame: Any
        if self.kind == "audio":
            frame = AudioFrame(format="s16", layout="mono", samples=960)
            frame.sample_rate = 48000
        else:
            picture = np.full((16, 16, 3), self.pts, np.uint8)
            frame = VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = self.pts
        self.sent[self.pts] = frame
        return frame


async def test_fanout_taps_are_bounded_live_and_each_has_its_own_frames() -> None:
    metrics = Metrics()
    fanout = Fanout(metrics)
    video, audio = CountingSource("video", 40), CountingSource("audio", 40)
    reader, other, idle = fanout.subscribe(video), fanout.subscribe(video), fanout.subscribe(video)
    voice = fanout.subscribe(audio)
    pc = RTCPeerConnection()
    fanout.start(pc)  # no transceivers: nothing to release; the hubs start pulling
    try:
        for _ in range(5):
            first, second = await reader.recv(), await other.recv()
            # The first tap sends the track's own frame; every other one a copy: same
            # picture, same time, another object (an encoder rebases what it is given).
            assert first is video.sent[first.pts]
            copy, original = second, video.sent[second.pts]
            assert copy is not original and copy.time_base == original.time_base
            assert np.array_equal(copy.to_ndarray(), original.to_ndarray())
            copy.pts = 10**6  # as an encoder's rebase would: nobody else's frame moves
            assert original.pts == int(original.to_ndarray()[0, 0, 0])
        assert await until(lambda: video.left == 0, 5)
        # The tap nobody read holds one frame (the newest) and counted the rest.
        assert len(idle._items) == 1 and idle._items[0][0].pts == 40 and idle.dropped == 39
        # Audio keeps 100 ms; a consumer starting late begins at the newest frame.
        assert await until(lambda: audio.left == 0, 5)
        assert voice.dropped == 40 - round(OUTPUT_BOUND.audio_ms / 20)
        assert (await voice.recv()).pts == 40
        dropped = metrics.registry.get_sample_value(
            "mirage_frames_dropped_total", {"track": "audio", "stage": "fanout"}
        )
        assert dropped == voice.dropped
        # The sources ended: so do the taps, once drained.
        assert (await idle.recv()).pts == 40
        with pytest.raises(MediaStreamError):
            await idle.recv()
        assert fanout.subscribe(video).readyState == "ended"
    finally:
        await fanout.close()
        await pc.close()


async def test_a_tap_drops_audio_that_waited_past_its_slot() -> None:
    """A consumer that fell behind resumes at the live edge, not MAX_WAIT_S+ late."""
    hub = Hub(CountingSource("audio", 0), Metrics())
    tap = hub.tap()
    frames = [AudioFrame(format="s16", layout="mono", samples=960) for _ in range(4)]
    for frame in frames:
        frame.sample_rate = 48000
    tap.push(frames[0])
    assert await tap.recv() is frames[0]
    tap.push(frames[1])
    tap.push(frames[2])
    await asyncio.sleep(MAX_WAIT_S * 1.5)
    tap.push(frames[3])
    assert await tap.recv() is frames[3] and tap.dropped == 2
    tap.push(frames[1])
    tap.push(frames[2])
    await asyncio.sleep(MAX_WAIT_S * 1.5)
    assert await tap.recv() is frames[2], "the newest frame is kept even when late"
    tap.stop()


async def test_whip_offer_without_candidates_connects(start_server: StartServer) -> None:
    """An encoder that sends its offer before gathering (no a=candidate lines, no
    end-of-candidates, no trickle): its checks reach us and its address is learnt
    as peer-reflexive."""
    server = await start_server()
    url = base_url(server)
    publisher = Publisher()
    try:
        offer = await local_offer(publisher.pc)
        bare = "".join(
            line
            for line in offer.splitlines(keepends=True)
            if not line.startswith(("a=candidate", "a=end-of-candidates"))
        )
        assert "a=candidate" in offer and "a=candidate" not in bare
        resp, answer = await post_sdp(f"{url}/whip", bare)
        assert resp.status == 201, answer
        assert "a=recvonly" in answer and "a=candidate" in answer
        await publisher.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        session = server.app[SERVER].sessions[resp.headers["Location"].rsplit("/", 1)[1]]
        assert await until(lambda: session.video is not None and session.video.frames_in > 5, 15)
    finally:
        await publisher.pc.close()
