"""Lost microphone packets cost the voice the lost 20 ms each and nothing more.

aiortc's receiver takes one frame per arriving packet; frames that waited behind a lost
packet once stayed a standing backlog (40 ms for the rest of the call), so every later
frame reached the voice track late and the playout delay rose to cover it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiortc.rtp import RtpPacket, is_rtcp

from mirage.client.probe import Probe
from tests.server_fixtures import StartServer, base_url

LOSE_EVERY = 20  # 5 % of the mic's packets
SECONDS = 3.0


def lose_audio(probe: Probe, every: int) -> list[int]:
    """Drop every ``every``-th RTP packet of the probe's mic before it leaves (test-only
    use of aiortc internals); returns the list the lost sequence numbers go into."""
    lost: list[int] = []
    sender = next(
        s for s in probe.pc.getSenders() if s.track is not None and s.track.kind == "audio"
    )
    transport = sender.transport
    send: Callable[[bytes], Awaitable[None]] = transport._send_rtp
    count = 0

    async def lossy(data: bytes) -> None:
        nonlocal count
        if not is_rtcp(data):
            packet = RtpPacket.parse(data)
            if packet.ssrc == sender._ssrc:
                count += 1
                if count % every == 0:
                    lost.append(packet.sequence_number)
                    return
        await send(data)

    transport._send_rtp = lossy  # type: ignore[method-assign]
    return lost


async def audio_need_ms(url: str, session_id: str) -> float:
    """The playout clock's need for the voice: p95 own latency + median inbound delay."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/sessions/{session_id}") as reply:
        return float((await reply.json())["latency_p95_ms"]["audio"])


async def session_need(url: str, lose_every: int | None) -> tuple[float, int]:
    probe = Probe(url, video=False)
    try:
        await probe.connect()
        lost = lose_audio(probe, lose_every) if lose_every else []
        await asyncio.sleep(SECONDS)
        assert probe.session_id is not None
        need = await audio_need_ms(url, probe.session_id)
        return need, len(lost)
    finally:
        await probe.close()


async def test_lost_mic_packets_add_no_standing_delay(start_server: StartServer) -> None:
    url = base_url(await start_server())
    clean, _ = await session_need(url, None)
    lossy, lost = await session_need(url, LOSE_EVERY)
    print(f"voice need {clean:.1f} ms clean, {lossy:.1f} ms with {lost} mic packets lost")
    assert lost >= SECONDS * 50 / LOSE_EVERY / 2, f"only {lost} packets were lost"
    # Each loss waits for up to three packets (60 ms) once; a standing backlog would
    # add 40 ms to the median inbound delay for good.
    assert lossy - clean < 20.0, f"voice need {clean:.1f} ms clean, {lossy:.1f} ms with loss"
