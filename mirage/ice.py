"""ICE server entries in the browser's ``RTCIceServer`` shape (``{"urls", "username",
"credential"}``, as ``GET /ice-servers`` hands them out) → aiortc's objects: one
conversion for the server's own peer connections and for the clients'."""

from __future__ import annotations

from collections.abc import Iterable

from aiortc import RTCIceServer


def rtc_ice_servers(entries: Iterable[object]) -> list[RTCIceServer]:
    """The usable entries (a dict with ``urls``: one URL or a list) as ``RTCIceServer``;
    anything else (from a server that speaks another dialect) is skipped."""
    servers = []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("urls"):
            servers.append(
                RTCIceServer(
                    urls=entry["urls"],
                    username=entry.get("username"),
                    credential=entry.get("credential"),
                )
            )
    return servers
