"""``mirage client``: not built yet (see its issue)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("client", help="(not built yet)")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("mirage client: not built yet")
