"""POST /reference: good portraits are taken, bad uploads get a clear error and lose nothing."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image

from mirage.app import create_app
from mirage.images import ImageLimits, decode_image
from mirage.models.base import BadInput
from mirage.state import SERVER
from tests.conftest import MEDIA
from tests.server_fixtures import LOOPBACK


def encode(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decode_accepts_jpeg_png_webp() -> None:
    portrait = np.asarray(Image.open(MEDIA / "s0.jpg").convert("RGB"))
    for fmt in ("JPEG", "PNG", "WEBP"):
        out = decode_image(encode(portrait, fmt))
        assert out.shape == portrait.shape and out.dtype == np.uint8


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"", 400, "empty"),
        (b"hello, not an image", 415, "not an image"),
        (png_bomb(60000, 60000), 413, "pixels"),
        (png_bomb(5000, 300), 413, "largest side"),
        (encode(np.zeros((20, 20, 3), np.uint8), "PNG"), 400, "at least"),
        (encode(np.zeros((100, 100, 3), np.uint8), "GIF"), 415, "GIF"),
        (encode(np.full((300, 300, 3), 128, np.uint8), "JPEG")[:400], 400, "truncated"),
        (png_bomb(50000, 50000), 413, "too many pixels"),
        (b"GIF89a" + b"\0" * 100, 415, "GIF images are not accepted"),
        (b"\0\0\0\x18ftypheic" + b"\0" * 100, 415, "heic files are not accepted"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415, "SVG images are not accepted"),
        (b"RIFF\0\0\0\0WEBPVP8 garbage", 400, "damaged"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 400, "damaged"),
    ],
)
def test_decode_refuses_bad_uploads_with_a_reason(data: bytes, status: int, reason: str) -> None:
    with pytest.raises(BadInput, match=reason) as err:
        decode_image(data, ImageLimits())
    assert err.value.status == status


async def test_post_reference_sets_the_default_and_bad_upload_keeps_it(aiohttp_client: Any) -> None:
    client: TestClient = await aiohttp_client(create_app(LOOPBACK))
    state = client.server.app[SERVER]
    portrait = np.asarray(Image.open(MEDIA / "s1.jpg").convert("RGB"))
    resp = await client.post(
        "/reference", data=encode(portrait, "PNG"), headers={"Content-Type": "image/png"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["target"] == "default"
    np.testing.assert_array_equal(state.reference, portrait)
    resp = await client.post("/reference", data=b"junk", headers={"Content-Type": "image/png"})
    assert resp.status == 415 and "not an image" in (await resp.json())["error"]
    np.testing.assert_array_equal(state.reference, portrait)  # nothing lost
    form = FormData()
    form.add_field("image", encode(portrait[::2, ::2].copy(), "JPEG"), filename="p.jpg")
    resp = await client.post("/reference", data=form)
    assert resp.status == 200 and (await resp.json())["width"] == (portrait.shape[1] + 1) // 2
    got = await client.get("/reference")
    assert got.status == 200 and got.content_type == "image/jpeg"
    missing = await client.post("/reference?session_id=nope", data=encode(portrait, "PNG"))
    assert missing.status == 404


async def test_refused_uploads_get_their_status_and_the_old_portrait_stays(
    aiohttp_client: Any,
) -> None:
    """The bytes decide, not the Content-Type; every refusal leaves the portrait as it was."""
    from skimage import data

    client: TestClient = await aiohttp_client(create_app(LOOPBACK.replace(face="warp")))
    state = client.server.app[SERVER]
    before = state.reference.copy()
    cases = [
        (png_bomb(50000, 50000), "image/png", 413, "too many pixels", "ImageTooLarge"),
        (b"plain text, not a picture", "image/jpeg", 415, "not an image", "UnsupportedImage"),
        (encode(data.coffee(), "JPEG"), "image/jpeg", 422, "face", "NoFaceError"),
        (
            encode(np.full((128, 128, 3), 90, np.uint8), "JPEG"),
            "image/png",
            422,
            "face",
            "NoFaceError",
        ),
    ]
    for payload, content_type, status, reason, kind in cases:
        resp = await client.post("/reference", data=payload, headers={"Content-Type": content_type})
        body = await resp.json()
        assert resp.status == status and reason in body["error"].lower(), body
        assert body["kind"] == kind, body
        np.testing.assert_array_equal(state.reference, before)  # nothing lost
    # A real portrait declared as something else is still taken for what it is.
    portrait = np.asarray(Image.open(MEDIA / "s0.jpg").convert("RGB"))
    resp = await client.post(
        "/reference", data=encode(portrait, "JPEG"), headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 200, await resp.text()
    assert state.reference.shape == portrait.shape
