"""A probe peer in its own process, so a test can make it vanish with SIGKILL."""

from __future__ import annotations

import asyncio
import sys

from mirage.client.probe import Probe


async def main(url: str) -> None:
    probe = Probe(url)
    await probe.connect()
    print(probe.session_id, flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
