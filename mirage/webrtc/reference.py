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
from aiohttp import BodyPartReader, MultipartReader, StreamReader, web

from mirage.engine.backends import face_check
from mirage.images import ImageLimits, decode_image
from mirage.models.base import BadInput
from mirage.state import SERVER

MAX_PARTS = 8  # a portrait form has one field; a body of many parts is not one


async def _read_upload(request: web.Request) -> bytes:
    """The image bytes: the body itself, or a multipart form's ``image`` field.

    The whole body is read in memory first (its size is capped once, by the
    route's policy in ``mirage.security.limits``) and the form parsed from there,
    never ``request.post()``: that spools file fields to a temporary file on disk,
    and portraits must stay in memory (SECURITY.md)."""
    body = await request.read()
    if not request.content_type.startswith("multipart/"):
        return body
    stream = StreamReader(request.protocol, max(len(body), 2**16), loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    try:
        reader = MultipartReader(request.headers, stream)
        for _ in range(MAX_PARTS):
            part = await reader.next()
            if part is None:
                break
            if isinstance(part, BodyPartReader) and part.name == "image":
                return bytes(await part.read())
    except (ValueError, AssertionError, RuntimeError) as exc:  # aiohttp's parse errors
        raise BadInput(f"malformed multipart body: {exc or type(exc).__name__}") from None
    raise BadInput("multipart upload has no 'image' field")


async def handle_post_reference(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    limits = ImageLimits(server.settings.max_image_bytes, server.settings.max_image_side)
    data = await _read_upload(request)
    loop = asyncio.get_running_loop()
    image = await loop.run_in_executor(None, decode_image, data, limits)
    session_id = request.query.get("session_id")
    if session_id:
        await server.session(session_id).set_reference(image)
        target = "session"
    else:
        # The default backend must find a face in it.
        face, models_dir = server.defaults["face"], server.settings.models_dir
        await loop.run_in_executor(None, face_check, face, models_dir, image)
        server.set_default_reference(image)
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
