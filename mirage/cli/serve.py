"""``mirage serve``: the WebRTC avatar server (also ``python server.py``)."""

from __future__ import annotations

import argparse
import logging
import os

from mirage.config import Settings, from_env, parse_port_range


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
    p.add_argument("--log-level", default="INFO")


def settings_from_args(args: argparse.Namespace, env: dict[str, str]) -> Settings:
    settings = from_env(env, Settings())
    changes = {
        key: value
        for key in ("host", "port", "face", "voice", "models_dir", "max_sessions", "udp_ports")
        if (value := getattr(args, key, None)) is not None
    }
    for key in ("ice_hosts", "ice_servers"):
        if getattr(args, key, None):
            changes[key] = tuple(getattr(args, key))
    return settings.replace(**changes)


def serve(settings: Settings) -> None:
    from aiohttp import web

    from mirage.app import create_app

    app = create_app(settings)
    logging.getLogger("mirage").info("Mirage on http://%s:%d", settings.host, settings.port)
    web.run_app(app, host=settings.host, port=settings.port, print=None)


def run(args: argparse.Namespace) -> int:
    serve(settings_from_args(args, dict(os.environ)))
    return 0
