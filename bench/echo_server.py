"""A plain aiortc echo: returns the received tracks unchanged (the baseline to beat).

Stock aiortc only, on purpose: no Mirage code on the media path. The one change
from aiortc's defaults is the ICE host list, so that it stays on loopback. It also
serves Mirage's page (web/) with a /config that offers only passthrough, so that
bench/browser_latency.py drives both servers with the same page.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from mirage.webrtc import aiortc_compat

WEB = Path(__file__).resolve().parents[1] / "web"
CONFIG = {
    "video": {"size": 512, "max_fps": 30, "levels": []},
    "audio": {"sample_rate": 48000, "frame_ms": 20},
    "defaults": {"face": "passthrough", "voice": "passthrough"},
    "voice_presets": {},
    "default_voice_preset": "",
    "backends": {"face": {"passthrough": None}, "voice": {"passthrough": None}},
    "max_sessions": 100,
    "auth": False,
}


async def offer(request: web.Request) -> web.Response:
    params = await request.json()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    request.app["pcs"].add(pc)

    @pc.on("track")
    def on_track(track):  # type: ignore[no-untyped-def]
        pc.addTrack(track)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await pc.close()
            request.app["pcs"].discard(pc)

    await pc.setRemoteDescription(RTCSessionDescription(params["sdp"], params["type"]))
    with aiortc_compat.ice_hosts(("127.0.0.1",)):
        await pc.setLocalDescription(await pc.createAnswer())
    return web.json_response(
        {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "session_id": None}
    )


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB / "index.html")


async def config(request: web.Request) -> web.Response:
    return web.json_response(CONFIG)


async def ice_servers(request: web.Request) -> web.Response:
    return web.json_response({"iceServers": []})


async def close_all(app: web.Application) -> None:
    await asyncio.gather(*(pc.close() for pc in app["pcs"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=7861)
    args = parser.parse_args()
    app = web.Application()
    app["pcs"] = set()
    app.router.add_post("/offer", offer)
    app.router.add_get("/", index)
    app.router.add_get("/config", config)
    app.router.add_get("/ice-servers", ice_servers)
    app.router.add_static("/web/", WEB)
    app.on_shutdown.append(close_all)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
