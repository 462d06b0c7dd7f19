"""One frozen Settings object: defaults < environment (MIRAGE_*) < command-line flags.

It is loaded once at start-up and passed explicitly; nothing below the CLI reads
``os.environ``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
    # Backends.
    face: str = "auto"  # liveportrait with its weights and a GPU, else warp
    voice: str = "auto"  # rvc with its weights and a GPU, else dsp
    voice_preset: str = "bright"  # the dsp voice a session gets unless it asks otherwise
    models_dir: str | None = None
    # Sessions.
    max_sessions: int = 4
    media_timeout_s: float = 5.0  # no inbound media this long → the peer is gone
    disconnected_grace_s: float = 5.0
    max_offer_bytes: int = 256 * 1024

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
    "face": str,
    "voice": str,
    "voice_preset": str,
    "models_dir": str,
    "max_sessions": int,
    "media_timeout_s": float,
    "disconnected_grace_s": float,
    "max_offer_bytes": int,
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
