"""Decoding an uploaded reference portrait, refusing anything unsafe or unusable.

Uploads are held in memory only. The header is read before any pixel is decoded,
so a pixel bomb (a small file that claims a huge image) is refused cheaply.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

from mirage.models.base import BadInput

ALLOWED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


class ImageTooLarge(BadInput):
    status = 413


class UnsupportedImage(BadInput):
    status = 415


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_side: int = 4096
    min_side: int = 64


def decode_image(data: bytes, limits: ImageLimits | None = None) -> np.ndarray:
    """JPEG/PNG/WebP bytes → RGB uint8 (H, W, 3); a typed error with a reason otherwise."""
    from PIL import Image, UnidentifiedImageError

    limits = limits or ImageLimits()
    if not data:
        raise BadInput("the image is empty")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"the image is {len(data)} bytes; the limit is {limits.max_bytes}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise UnsupportedImage("not an image (JPEG, PNG or WebP expected)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageTooLarge("the image claims too many pixels") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadInput(f"the image is damaged or truncated: {exc}") from None
        if image.format not in ALLOWED_FORMATS:
            raise UnsupportedImage(f"{image.format} images are not accepted; use JPEG, PNG or WebP")
        width, height = image.size
        if max(width, height) > limits.max_side:
            raise ImageTooLarge(
                f"the image is {width}×{height}; the largest side allowed is {limits.max_side}"
            )
        if min(width, height) < limits.min_side:
            raise BadInput(f"the image is {width}×{height}; at least {limits.min_side} px needed")
        try:
            rgb = image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadInput(f"the image is damaged or truncated: {exc}") from None
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
