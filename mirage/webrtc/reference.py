"""POST /reference: the portrait to animate, for one session or as the server default.

The body is the image itself (``Content-Type: image/*``) or a multipart form with
an ``image`` field. ``?session_id=`` targets a live session; without it the image
becomes the default for new sessions. Either way it is checked for a face first;
on any error the previous portrait stays.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
from aiohttp import web

from mirage.images import ImageLimits, decode_image
from mirage.models import registry
from mirage.models.base import BadInput
from mirage.state import SERVER


async def _read_upload(request: web.Request, limit: int) -> bytes:
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if getattr(part, "name", None) == "image":
                data = await part.read(decode=False)  # type: ignore[union-attr]
                return bytes(data)
        raise BadInput("multipart upload has no 'image' field")
    return await request.read()  # bounded by the app's client_max_size


async def handle_post_reference(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    limits = ImageLimits()
    data = await _read_upload(request, limits.max_bytes)
    loop = asyncio.get_running_loop()
    image = await loop.run_in_executor(None, decode_image, data, limits)
    session_id = request.query.get("session_id")
    if session_id:
        await server.session(session_id).set_reference(image)
        target = "session"
    else:
        face = server.defaults["face"]

        def check() -> None:  # the default backend must find a face in it
            animator = registry.create_animator(face)
            animator.set_reference(image)

        await loop.run_in_executor(None, check)
        server.reference = image
        target = "default"
    h, w = image.shape[:2]
    return web.json_response({"ok": True, "target": target, "width": w, "height": h})


async def handle_get_reference(request: web.Request) -> web.Response:
    """The current default portrait as JPEG (the page previews it)."""
    from PIL import Image

    image: np.ndarray = request.app[SERVER].reference
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=90)
    return web.Response(body=buf.getvalue(), content_type="image/jpeg")
