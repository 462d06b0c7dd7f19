"""The ``mirage`` command: one module per sub-command, each with ``add_parser`` and ``run``.

A sub-command module is imported only when its name is on the command line (or
for ``--help``), so ``mirage serve`` never pays for the client's or the render's
imports.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: sub-command → module under mirage.cli (each defines add_parser(sub) and run(args) -> int)
COMMANDS = {
    "serve": "serve",
    "client": "client",
    "weights": "weights",
    "doctor": "doctor",
    "render": "render",
    "bench": "bench",
    "token": "token",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirage", description="Real-time AI avatar server")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name)  # listed in --help, parsed only when chosen
            continue
        importlib.import_module(f"mirage.cli.{module}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")  # plain `mirage [flags]` serves
    command = argv[0] if argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(getattr(args, "log_level", "INFO")).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module = importlib.import_module(f"mirage.cli.{COMMANDS[args.command]}")
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
