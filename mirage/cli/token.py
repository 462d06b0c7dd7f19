"""``mirage token``: mint a short-lived access token (an HS256 JWT) for a user or kiosk.

The secret is ``MIRAGE_JWT_SECRET`` from the environment, the same one the
server verifies with; the token goes to stdout, for a page or ``Authorization:
Bearer``. Tokens cannot be revoked one by one: keep their lifetime short, and
change the secret to revoke them all.
"""

from __future__ import annotations

import argparse
import os
import sys

from mirage.security.auth import issue_jwt


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="print an access token signed with MIRAGE_JWT_SECRET")
    p.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds (default 3600)")
    p.add_argument("--subject", default="mirage", help="who it is for (the JWT 'sub' claim)")


def run(args: argparse.Namespace) -> int:
    secret = os.environ.get("MIRAGE_JWT_SECRET", "").strip()
    if not secret:
        print("mirage token: set MIRAGE_JWT_SECRET (the server's secret) first", file=sys.stderr)
        return 2
    if args.ttl <= 0:
        print("mirage token: --ttl must be positive", file=sys.stderr)
        return 2
    print(issue_jwt(secret, args.ttl, subject=args.subject))
    return 0
