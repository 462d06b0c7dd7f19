"""One frozen Settings object: defaults < environment (MIRAGE_*) < command-line flags.

It is loaded once at start-up and passed explicitly; nothing below the CLI reads
``os.environ``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mirage.capacity import default_max_sessions
from mirage.engine.cputhreads import parse_opencv_threads


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    # WebRTC / ICE. No public STUN server unless asked for: media must not leak to
    # a third party by default, and tests must stay on loopback.
    ice_servers: tuple[str, ...] = ()
    ice_hosts: tuple[str, ...] = ()  # host addresses ICE may offer; () = every interface
    udp_ports: tuple[int, int] | None = None  # ICE host ports, e.g. (50000, 50100); None = any
    low_latency_receive: bool = True  # see mirage/webrtc/aiortc_compat.py
    # Media (video sizes and rates: the quality levels in mirage/engine/adapt.py).
    audio_backlog_ms: float = 60.0  # converted audio older than this is dropped (live edge)
    sync: bool = True  # hold the faster track back so lips and voice leave together
    max_playout_delay_ms: float = 500.0
    video_lead_ms: float = 20.0  # video leaves this much early: its codecs are slower than Opus
    opencv_threads: int = 1  # OpenCV's pool per call, process-wide (mirage/engine/cputhreads.py)
    # Backends.
    face: str = "auto"  # liveportrait with its weights and a GPU, else warp
    voice: str = "auto"  # rvc with its weights and a GPU, else dsp
    voice_preset: str = "bright"  # the dsp voice a session gets unless it asks otherwise
    models_dir: str | None = None
    # Test-only switch: makes the fault-injection backends (mirage/models/testing.py:
    # hang, slow, failing, ...) reachable. Tests and benchmarks set it; never a server.
    test_backends: bool = False
    # Sessions.
    max_sessions: int = field(default_factory=default_max_sessions)  # see mirage/capacity.py
    media_timeout_s: float = 5.0  # no inbound media this long → the peer is gone
    disconnected_grace_s: float = 5.0
    shutdown_timeout_s: float = 5.0  # SIGTERM: sessions get this long to close (< docker's 10 s)
    # Faults: a model call past its deadline is abandoned (the frame falls back);
    # this many failures in a row (raises or hangs) remake the backend.
    model_timeout_s: float = 2.0
    model_restart_after: int = 3
    max_offer_bytes: int = 256 * 1024  # SDP/JSON bodies (every route but /reference)
    max_viewers_per_session: int = 4  # WHEP viewers of one session (each costs an encoder)
    # Scale-out: session ids become "<instance_id>-<hex>" so a proxy can route a
    # session's later requests to its owner (deploy/nginx/mirage.conf). "" = plain ids.
    instance_id: str = ""
    # Security (see SECURITY.md). Secrets come from the environment, never flags.
    token: str | None = None  # a shared Bearer token; None = no auth unless jwt_secret
    jwt_secret: str | None = None  # HS256 JWTs (with ``exp``) signed with this are accepted
    allowed_origins: tuple[str, ...] = ()  # cross-origin pages allowed ("*" = any)
    offer_rate: float = 30.0  # session-creating requests per minute per client (0 = no limit)
    trusted_proxies: tuple[str, ...] = ()  # addresses/CIDRs whose X-Forwarded-For is believed
    max_image_bytes: int = 10 * 1024 * 1024  # reference portrait upload cap
    max_image_side: int = 4096  # longest side, checked from the header before decoding
    turn_urls: tuple[str, ...] = ()  # e.g. turn:turn.example.com:3478?transport=udp
    turn_secret: str | None = None  # coturn ``static-auth-secret`` (TURN REST credentials)
    turn_ttl_s: int = 3600  # lifetime of the TURN credentials handed out

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def parse_port_range(value: str) -> tuple[int, int]:
    """``"50000-50100"`` → (50000, 50100), checked."""
    low_text, sep, high_text = value.partition("-")
    try:
        low, high = int(low_text), int(high_text if sep else low_text)
    except ValueError:
        raise ValueError(f"UDP port range must look like 50000-50100, got {value!r}") from None
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"UDP port range {value!r} must be within 1024-65535, low ≤ high")
    return low, high


def parse_instance_id(value: str) -> str:
    """An instance id: lowercase letters and digits only (it prefixes URL path parts)."""
    if value and not re.fullmatch(r"[a-z0-9]{1,32}", value):
        raise ValueError(f"instance id must be 1-32 of a-z and 0-9, got {value!r}")
    return value


def _secret(value: str) -> str | None:
    return value.strip() or None  # an empty MIRAGE_TOKEN= means "not set"


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


_ENV_PARSERS: dict[str, Any] = {
    "host": str,
    "port": int,
    "ice_servers": _split,
    "ice_hosts": _split,
    "udp_ports": parse_port_range,
    "low_latency_receive": lambda v: v.lower() not in ("0", "false", "no", "off"),
    "audio_backlog_ms": float,
    "sync": lambda v: v.lower() not in ("0", "false", "no", "off"),
    "max_playout_delay_ms": float,
    "video_lead_ms": float,
    "opencv_threads": parse_opencv_threads,
    "face": str,
    "voice": str,
    "voice_preset": str,
    "models_dir": str,
    "test_backends": lambda v: v.lower() in ("1", "true", "yes", "on"),
    "max_sessions": int,
    "media_timeout_s": float,
    "disconnected_grace_s": float,
    "shutdown_timeout_s": float,
    "model_timeout_s": float,
    "model_restart_after": int,
    "max_offer_bytes": int,
    "max_viewers_per_session": int,
    "instance_id": parse_instance_id,
    "token": _secret,
    "jwt_secret": _secret,
    "allowed_origins": _split,
    "offer_rate": float,
    "trusted_proxies": _split,
    "max_image_bytes": int,
    "max_image_side": int,
    "turn_urls": _split,
    "turn_secret": _secret,
    "turn_ttl_s": int,
}


def from_env(env: Mapping[str, str], base: Settings | None = None) -> Settings:
    """Settings with every ``MIRAGE_<FIELD>`` (and the platform's ``PORT``) applied."""
    settings = base or Settings()
    changes: dict[str, Any] = {}
    if "PORT" in env:
        changes["port"] = int(env["PORT"])
    for name, parse in _ENV_PARSERS.items():
        key = f"MIRAGE_{name.upper()}"
        if key in env:
            changes[name] = parse(env[key])
    return settings.replace(**changes)
