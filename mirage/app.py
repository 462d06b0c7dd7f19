"""Builds the aiohttp application: routes, static client, metrics, error mapping."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from mirage import __version__, security
from mirage.config import Settings
from mirage.engine.adapt import LEVELS
from mirage.engine.cputhreads import apply_opencv_threads
from mirage.models import registry
from mirage.models.base import MirageError
from mirage.models.voice.presets import presets as voice_presets
from mirage.ops.gpu import handle_gpu
from mirage.security.policy import COSTLY, OPEN, PROTECTED, UPLOAD, add_static
from mirage.security.policy import add_route as route
from mirage.state import SERVER, MirageServer
from mirage.webrtc import aiortc_compat, ice_servers, reference, signalling, whip

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[1] / "web"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every typed error to its status, in this one place, with a readable message."""
    try:
        return await handler(request)
    except MirageError as exc:
        headers = {}
        retry = getattr(exc, "retry_after_s", None)
        if retry is not None:
            headers["Retry-After"] = str(retry)
        return web.json_response(
            {"error": str(exc), "kind": type(exc).__name__}, status=exc.status, headers=headers
        )


async def health(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    limit = server.settings.max_sessions
    load = 1.0 if limit <= 0 else min(1.0, len(server.sessions) / limit)
    body = {"status": "ok", "version": __version__, "sessions": len(server.sessions), "load": load}
    if server.draining:  # a load balancer routes elsewhere while we close sessions
        return web.json_response({**body, "status": "draining", "load": 1.0}, status=503)
    return web.json_response(body)


async def config(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    s = server.settings
    return web.json_response(
        {
            "video": {
                "size": LEVELS[0].size,
                "max_fps": LEVELS[0].fps,
                "levels": [
                    {"name": lv.name, "size": lv.size, "fps": lv.fps, "quality": lv.quality}
                    for lv in LEVELS
                ],
            },
            "audio": {
                "sample_rate": 48000,
                "frame_ms": 20,
                "backlog_ms": s.audio_backlog_ms,
                "voice": {"backend": server.defaults["voice"], **await server.voice_timing()},
            },
            "defaults": server.defaults,
            "voice_presets": voice_presets(),
            "default_voice_preset": s.voice_preset,
            "backends": server.backends_report(),
            # What a client may set on each (type, range, default): the schemas of
            # mirage/models/registry.py, the same ones every request is checked against.
            "backend_options": registry.describe_user_backends(),
            "max_sessions": s.max_sessions,
            "auth": bool(s.token or s.jwt_secret),  # the page asks for a token
        }
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVER].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def _watch_loop_lag(app: web.Application) -> AsyncIterator[None]:
    """A gauge of event-loop lag: a blocked loop is the first sign of a slow stage."""
    server = app[SERVER]

    async def watch() -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.1)
            server.metrics.loop_lag.set(max(0.0, time.monotonic() - start - 0.1))

    task = asyncio.create_task(watch())
    yield
    task.cancel()
    await server.close_all()


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings()
    aiortc_compat.install()
    apply_opencv_threads(settings.opencv_threads)
    app = web.Application(
        middlewares=[
            *security.outer_middlewares(settings),
            errors_as_json,
            *security.inner_middlewares(settings),
        ],
        client_max_size=16 * 1024 * 1024,  # per-route caps: RoutePolicy.body below
    )
    app[SERVER] = MirageServer(settings)
    app.cleanup_ctx.append(_watch_loop_lag)
    # The route table, each route with its policy (auth, rate limit, body cap):
    # mirage/security/policy.py; the middlewares read it from the matched route.
    route(app, "GET", "/", index, OPEN)
    route(app, "GET", "/health", health, OPEN)
    route(app, "GET", "/config", config, OPEN)  # tells the page whether a token is needed
    route(app, "GET", "/metrics", metrics, OPEN)
    route(app, "GET", "/gpu", handle_gpu, OPEN)
    route(app, "POST", "/offer", signalling.handle_offer, COSTLY)
    route(app, "GET", "/sessions/{session_id}", signalling.handle_session_stats, PROTECTED)
    route(app, "DELETE", "/sessions/{session_id}", signalling.handle_delete, PROTECTED)
    route(app, "PATCH", "/sessions/{session_id}", signalling.handle_session_patch, PROTECTED)
    whip.add_routes(app)  # POST /whip, /whep/{session_id} and their resources
    route(app, "POST", "/reference", reference.handle_post_reference, UPLOAD)
    route(app, "GET", "/reference", reference.handle_get_reference, PROTECTED)
    route(app, "GET", "/ice-servers", ice_servers.handle_ice_servers, PROTECTED)  # TURN secrets
    if WEB_DIR.is_dir():
        add_static(app, "/web/", str(WEB_DIR))
    return app
