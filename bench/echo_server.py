"""A plain aiortc echo: returns the received tracks unchanged (the baseline to beat).

Stock aiortc only, on purpose: no Mirage code on the media path. The one change
from aiortc's defaults is the ICE host list, so that it stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from mirage.webrtc import aiortc_compat


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


async def close_all(app: web.Application) -> None:
    await asyncio.gather(*(pc.close() for pc in app["pcs"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=7861)
    args = parser.parse_args()
    app = web.Application()
    app["pcs"] = set()
    app.router.add_post("/offer", offer)
    app.on_shutdown.append(close_all)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
