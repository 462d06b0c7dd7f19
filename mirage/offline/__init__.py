"""Offline rendering: a driving video file in, an avatar video file out.

The same backends as the live server animate every frame and convert the voice,
but time is the file's, not the wall clock's: nothing is dropped, and the voice
converter's delay is taken back out so lips and voice line up sample for frame.
"""

from __future__ import annotations
