"""The HTTP surface without media: health, config, metrics, and every bad offer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from mirage.app import create_app
from tests.server_fixtures import LOOPBACK

GOOD_SDP_HEAD = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def client_for(aiohttp_client: Any, **changes: Any) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(LOOPBACK.replace(**changes)))
    return client


async def test_health_config_metrics(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    health = await (await client.get("/health")).json()
    assert health["status"] == "ok" and health["sessions"] == 0 and health["load"] == 0
    config = await (await client.get("/config")).json()
    assert config["video"]["size"] == 512 and config["video"]["max_fps"] == 20.0
    assert [lv["size"] for lv in config["video"]["levels"]] == [512, 512, 512, 384, 256]
    voice = config["audio"]["voice"]
    assert voice["backend"] == "passthrough" and voice["latency_s"] == 0.0
    assert voice["block_ms"] == 20.0
    assert config["backends"]["face"]["passthrough"] is None
    assert config["backends"]["voice"]["passthrough"] is None
    assert "invert" not in config["backends"]["face"], "test backends must stay hidden"
    text = await (await client.get("/metrics")).text()
    for name in (
        "mirage_sessions_active",
        "mirage_frames_in_total",
        "mirage_stage_seconds",
        "mirage_frame_latency_seconds",
    ):
        assert name in text
    page = await client.get("/")
    assert page.status == 200 and "/web/app.js" in await page.text()
    script = await client.get("/web/app.js")
    assert script.status == 200 and "RTCPeerConnection" in await script.text()


async def post_offer(client: TestClient, body: bytes) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/offer", data=body, headers={"Content-Type": "application/json"})
    return resp.status, await resp.json()


async def test_bad_offers_get_400_with_a_reason_and_the_server_keeps_serving(
    aiohttp_client: Any,
) -> None:
    client = await client_for(aiohttp_client)
    cases = {
        b"not json": "not JSON",
        b"[1, 2]": "JSON object",
        json.dumps({"sdp": GOOD_SDP_HEAD, "type": "answer"}).encode(): "'type' must be 'offer'",
        json.dumps({"type": "offer"}).encode(): "'sdp' must be",
        json.dumps({"sdp": "hello", "type": "offer"}).encode(): "'sdp' must be",
        json.dumps({"sdp": GOOD_SDP_HEAD + "m=garbage\r\n", "type": "offer"}).encode(): "SDP",
        json.dumps({"sdp": GOOD_SDP_HEAD, "type": "offer"}).encode(): "neither a video nor",
        json.dumps(
            {"sdp": GOOD_SDP_HEAD, "type": "offer", "options": {"face": "nope"}}
        ).encode(): "unknown face backend 'nope'",
        json.dumps({"sdp": GOOD_SDP_HEAD, "type": "offer", "options": []}).encode(): "options",
    }
    for body, reason in cases.items():
        status, answer = await post_offer(client, body)
        assert status == 400, (body, status, answer)
        assert reason in answer["error"], (body, answer)
    status, answer = await post_offer(client, b"{" + b" " * 300_000 + b"}")
    assert status == 413 and "limit" in answer["error"]
    assert (await client.get("/health")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'mirage_offers_total{result="BadOffer"}' in metrics


async def test_config_reports_the_dsp_voice_latency(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, voice="dsp")
    voice = (await (await client.get("/config")).json())["audio"]["voice"]
    assert voice["backend"] == "dsp" and voice["block_ms"] == 10.0
    assert voice["latency_s"] == pytest.approx(0.020)
    assert voice["total_delay_ms"] == pytest.approx(30.0, abs=0.2)  # the 30 ms target
    assert (await (await client.get("/config")).json())["backends"]["voice"]["dsp"] is None


async def test_full_server_answers_503_with_retry_after(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, max_sessions=0)
    resp = await client.post("/offer", json={"sdp": GOOD_SDP_HEAD, "type": "offer"})
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert "capacity" in (await resp.json())["error"]


async def test_unknown_session_is_404(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    assert (await client.delete("/sessions/nope")).status == 404
    assert (await client.get("/sessions/nope")).status == 404
