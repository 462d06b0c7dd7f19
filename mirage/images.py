"""Decoding an uploaded reference portrait, refusing anything unsafe or unusable.

The format is sniffed from the first bytes (never taken from a header or a file
name), and only the JPEG, PNG and WebP decoders may run: Pillow is never asked
to guess, so its other parsers stay out of reach. Size is checked from the
image header before a pixel is decoded, so a pixel bomb (a small file that
claims a huge image) costs nothing. EXIF orientation is applied, then the
pixels are all that is kept: EXIF, GPS, ICC and text chunks are dropped with
the file. Uploads are held in memory only, never written to disk.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mirage.models.base import BadInput

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

ALLOWED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
#: Formats recognised only to name them in the refusal.
_OTHER_MAGIC = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"\x00\x00\x01\x00": "ICO",
    b"%PDF": "PDF",
    b"%!PS": "PostScript",
    b"<svg": "SVG",
    b"<?xml": "SVG/XML",
}
_EXIF_ORIENTATION = 0x0112


class ImageTooLarge(BadInput):
    status = 413


class UnsupportedImage(BadInput):
    status = 415


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_side: int = 4096
    min_side: int = 64


def sniff(data: bytes) -> str:
    """The format the bytes really are (``JPEG``/``PNG``/``WEBP``); 415 for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":  # ISO media: HEIC, AVIF, MP4 …
        brand = data[8:12].decode("ascii", "replace").strip()
        raise UnsupportedImage(
            f"{brand or 'ISO media'} files are not accepted; use JPEG, PNG or WebP"
        )
    for magic, name in _OTHER_MAGIC.items():
        if data.startswith(magic):
            raise UnsupportedImage(f"{name} images are not accepted; use JPEG, PNG or WebP")
    raise UnsupportedImage("not an image (JPEG, PNG or WebP expected)")


def decode_image(data: bytes, limits: ImageLimits | None = None) -> np.ndarray:
    """JPEG/PNG/WebP bytes → RGB uint8 (H, W, 3), upright; a typed error with a reason otherwise."""
    from PIL import Image

    limits = limits or ImageLimits()
    if not data:
        raise BadInput("the image is empty")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"the image is {len(data)} bytes; the limit is {limits.max_bytes}")
    fmt = sniff(data)
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])  # reads the header only
    except Image.DecompressionBombError:
        raise ImageTooLarge("the image claims too many pixels") from None
    except Exception as exc:  # untrusted bytes: any parser failure is the upload's fault
        raise BadInput(f"the image is damaged or truncated: {_reason(exc)}") from None
    width, height = image.size
    if max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"the image is {width}×{height}; the largest side allowed is {limits.max_side}"
        )
    if min(width, height) < limits.min_side:
        raise BadInput(f"the image is {width}×{height}; at least {limits.min_side} px needed")
    orientation = _orientation(image)
    try:
        rgb = image.convert("RGB")
    except Exception as exc:
        raise BadInput(f"the image is damaged or truncated: {_reason(exc)}") from None
    return np.ascontiguousarray(_upright(np.asarray(rgb, dtype=np.uint8), orientation))


def _orientation(image: PILImage) -> int:
    """The EXIF orientation (1–8); 1 when absent or unreadable (a bad EXIF block is ignored)."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to H×W×C pixels (the camera's rotation/mirroring undone)."""
    if orientation in (5, 6, 7, 8):  # the stored image is the upright one turned sideways
        pixels = np.swapaxes(pixels, 0, 1)  # transpose: orientation 5
        if orientation == 6:
            pixels = pixels[:, ::-1]
        elif orientation == 7:
            pixels = pixels[::-1, ::-1]
        elif orientation == 8:
            pixels = pixels[::-1]
        return pixels
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    return pixels


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
