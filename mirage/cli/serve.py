"""``mirage serve``: the WebRTC avatar server (also ``python server.py``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING

from mirage.config import Settings, from_env, parse_instance_id, parse_port_range

if TYPE_CHECKING:
    from aiohttp import web


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the WebRTC avatar server")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, help="HTTP port (default 7860; env PORT / MIRAGE_PORT)")
    p.add_argument(
        "--face", help="default face backend: auto (default), warp, liveportrait, passthrough"
    )
    p.add_argument("--voice", help="default voice backend: auto (default), dsp, rvc, passthrough")
    p.add_argument(
        "--ice-host",
        action="append",
        dest="ice_hosts",
        help="host address ICE may offer (repeatable; default: every interface)",
    )
    p.add_argument(
        "--ice-server",
        action="append",
        dest="ice_servers",
        help="STUN/TURN URL (repeatable; default: none)",
    )
    p.add_argument(
        "--udp-ports",
        type=parse_port_range,
        dest="udp_ports",
        help="ICE host UDP port range, e.g. 50000-50100 (default: any port)",
    )
    p.add_argument("--models-dir", help="weights folder (default models/; env MIRAGE_MODELS_DIR)")
    p.add_argument("--max-sessions", type=int, help="sessions admitted at once (default 4)")
    p.add_argument(
        "--instance-id",
        type=parse_instance_id,
        help="prefix for session ids, [a-z0-9]+, so a proxy routes them here (default none)",
    )
    p.add_argument(
        "--allowed-origin",
        action="append",
        dest="allowed_origins",
        help="a web origin whose pages may call this server, e.g. https://app.example "
        "(repeatable; '*' = any; the server's own page is always allowed)",
    )
    p.add_argument(
        "--offer-rate",
        type=float,
        help="new sessions (POST /offer, /whip) and uploads per minute per client (default 30; 0 = off)",
    )
    p.add_argument(
        "--trusted-proxy",
        action="append",
        dest="trusted_proxies",
        help="address or CIDR of a reverse proxy whose X-Forwarded-For is believed (repeatable)",
    )
    p.add_argument(
        "--turn-url",
        action="append",
        dest="turn_urls",
        help="TURN URL handed out with short-lived credentials from MIRAGE_TURN_SECRET (repeatable)",
    )
    p.add_argument("--turn-ttl", type=int, dest="turn_ttl_s", help="TURN credential lifetime, s")
    # Secrets (MIRAGE_TOKEN, MIRAGE_JWT_SECRET, MIRAGE_TURN_SECRET) are environment-only:
    # a flag would show them to every user of `ps`.
    p.add_argument("--log-level", default="INFO")


def settings_from_args(args: argparse.Namespace, env: dict[str, str]) -> Settings:
    settings = from_env(env, Settings())
    changes = {
        key: value
        for key in (
            "host",
            "port",
            "face",
            "voice",
            "models_dir",
            "max_sessions",
            "udp_ports",
            "instance_id",
            "offer_rate",
            "turn_ttl_s",
        )
        if (value := getattr(args, key, None)) is not None
    }
    for key in ("ice_hosts", "ice_servers", "allowed_origins", "trusted_proxies", "turn_urls"):
        if getattr(args, key, None):
            changes[key] = tuple(getattr(args, key))
    return settings.replace(**changes)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings) -> None:

    from mirage.app import create_app

    app = create_app(settings)
    log = logging.getLogger("mirage")
    log.info("Mirage on http://%s:%d", settings.host, settings.port)
    if not (settings.token or settings.jwt_secret) and not _loopback(settings.host):
        log.warning(
            "listening on %s without auth: anyone who can reach it can use it "
            "(set MIRAGE_TOKEN or MIRAGE_JWT_SECRET; see SECURITY.md)",
            settings.host,
        )
    asyncio.run(_serve_until_signalled(app, settings))


async def _serve_until_signalled(app: web.Application, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, then drain: offers get 503 at once, sessions close
    (peers are told) within ``shutdown_timeout_s``, and the process exits 0."""
    from aiohttp import web

    from mirage.state import SERVER

    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log = logging.getLogger("mirage")
    log.info("signal received: draining %d sessions", len(app[SERVER].sessions))
    clean = await app[SERVER].shutdown(settings.shutdown_timeout_s)
    log.info("sessions closed%s; exiting", "" if clean else " (some timed out)")
    await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    serve(settings_from_args(args, dict(os.environ)))
    return 0
