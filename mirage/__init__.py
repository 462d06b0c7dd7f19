"""Mirage: a real-time AI avatar media server (WebRTC in, animated face and converted voice out)."""

from __future__ import annotations

__version__ = "0.1.0"
