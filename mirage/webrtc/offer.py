"""The body of ``POST /offer`` (and WHIP's query string) → a checked ``Offer``.

Pure parsing, no server state: ``mirage.state`` types its ``make_backends`` with
``Offer`` without importing the handlers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mirage.engine.adapt import find_level
from mirage.models.base import BadInput


class BadOffer(BadInput):
    """An offer we cannot parse or answer."""


@dataclass(frozen=True)
class Offer:
    sdp: str
    face: str | None
    voice: str | None
    face_options: dict[str, Any]
    voice_options: dict[str, Any]
    pinned_level: int | None = None


def parse_offer(body: bytes) -> Offer:
    """Validate the JSON body of POST /offer; every problem is a BadOffer with a reason.
    (Its size was capped by the route's policy: ``mirage.security.limits``.)"""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadOffer(f"offer body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadOffer("offer body must be a JSON object with 'sdp' and 'type'")
    if data.get("type") != "offer":
        raise BadOffer(f"'type' must be 'offer', got {data.get('type')!r}")
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise BadOffer("'sdp' must be an SDP string starting with 'v=0'")
    options = data.get("options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise BadOffer("'options' must be an object")

    def name(key: str) -> str | None:
        value = options.get(key)
        if value is not None and not isinstance(value, str):
            raise BadOffer(f"options.{key} must be a backend name")
        return value

    def extra(key: str) -> dict[str, Any]:
        value = options.get(key)
        value = {} if value is None else value
        if not isinstance(value, dict):
            raise BadOffer(f"options.{key} must be an object")
        return value

    return Offer(
        sdp,
        name("face"),
        name("voice"),
        extra("face_options"),
        extra("voice_options"),
        parse_quality(options.get("quality", "auto")),
    )


def parse_quality(value: Any) -> int | None:
    """``"auto"`` → None (adaptive); a level name or index → that level pinned."""
    if value is None or value == "auto":
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise BadOffer("'quality' must be 'auto', a level name or a level index")
    try:
        return find_level(value)
    except ValueError as exc:
        raise BadOffer(str(exc)) from None


__all__ = ["BadOffer", "Offer", "parse_offer", "parse_quality"]
