"""The media watchdog: a peer that vanished without a word sends no more media.

Every tick (a quarter of ``timeout_s``, at most 1 s) it calls ``on_tick`` (the
session publishes its gauges), then ends the session once no inbound track has
delivered a frame for ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from mirage.tracks.base import TransformTrack


async def watch_media(
    tracks: Callable[[], Sequence[TransformTrack]],
    timeout_s: float,
    on_tick: Callable[[], None],
    on_idle: Callable[[str], None],
) -> None:
    """Returns after calling ``on_idle(reason)`` (or when cancelled)."""
    while True:
        await asyncio.sleep(min(1.0, timeout_s / 4))
        on_tick()
        live = tracks()
        if not live:
            continue
        idle = time.monotonic() - max(t.last_input for t in live)
        if idle > timeout_s:
            on_idle(f"no media for {idle:.1f} s")
            return


__all__ = ["watch_media"]
