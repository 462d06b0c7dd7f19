"""Mirage: a real-time AI avatar media server (WebRTC in, animated face and converted voice out).

The layers, the path of a frame through them and where each policy lives: docs/architecture.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
