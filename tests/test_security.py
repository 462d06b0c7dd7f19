"""The outer wall: auth, origins, rate limits, body limits, image checks, TURN credentials.

Every refusal is checked for its status, its JSON ``{"error", "kind"}`` and its
headers, against the real app over real HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image, ImageOps

from mirage.app import create_app
from mirage.client.connect import Refused
from mirage.client.probe import Probe
from mirage.images import _upright, decode_image
from mirage.security.auth import Verifier, issue_jwt, verify_jwt
from mirage.security.cors import same_origin
from mirage.security.policy import OPEN, ROUTE_POLICIES, SAFE_METHODS, RoutePolicy, add_route
from mirage.security.ratelimit import RateLimiter, client_address, parse_networks
from mirage.security.turn import rtc_ice_servers, turn_credentials
from mirage.state import SERVER
from tests.conftest import MEDIA, need_chromium
from tests.server_fixtures import LOOPBACK, StartServer, base_url

TOKEN = "correct-horse-battery-staple"
SECRET = "jwt-secret"
#: Made with openssl (not our code): HS256 over {"sub":"kiosk-1","exp":4102444800}.
OPENSSL_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJraW9zay0xIiwiZXhwIjo0MTAyNDQ0ODAwfQ"
    ".LUfoDTNwcuX-HGZ9daHhilfV5ufkGfixEC08AfeTYZc"
)
UNAUTHORIZED = {"error": "unauthorized", "kind": "Unauthorized"}
EVIL = "https://evil.example"
ROOT = Path(__file__).resolve().parents[1]


async def client_for(aiohttp_client: Any, **changes: Any) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(LOOPBACK.replace(**changes)))
    return client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------- tokens (pure)


def test_jwt_made_elsewhere_verifies_and_every_forgery_fails() -> None:
    now = time.time()
    assert verify_jwt(OPENSSL_JWT, SECRET, now) == {"sub": "kiosk-1", "exp": 4102444800}
    assert verify_jwt(OPENSSL_JWT, "other-secret", now) is None
    head, body, sig = OPENSSL_JWT.split(".")
    forged = b64url(json.dumps({"sub": "admin", "exp": 4102444800}).encode())
    assert verify_jwt(f"{head}.{forged}.{sig}", SECRET, now) is None
    none_head = b64url(b'{"alg":"none","typ":"JWT"}')
    assert verify_jwt(f"{none_head}.{body}.", SECRET, now) is None  # alg none
    for junk in ("", "a.b", "a.b.c", "....", f"{head}.{body}", "x" * 5000):
        assert verify_jwt(junk, SECRET, now) is None
    issued = issue_jwt(SECRET, ttl_s=60, now=now)
    assert verify_jwt(issued, SECRET, now + 30) is not None
    assert verify_jwt(issued, SECRET, now + 120) is None  # expired
    for claims in (
        {"sub": "x"},
        {"exp": True},
        {"exp": "4102444800"},
        {"exp": 4102444800, "nbf": now + 600},
    ):
        payload = b64url(json.dumps(claims).encode())
        mac = hmac.new(SECRET.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
        assert verify_jwt(f"{head}.{payload}.{b64url(mac)}", SECRET, now) is None, claims


def test_verifier_takes_the_shared_token_or_a_jwt_and_nothing_else() -> None:
    both = Verifier(token=TOKEN, jwt_secret=SECRET)
    assert both.check(f"Bearer {TOKEN}") and both.check(f"bearer  {OPENSSL_JWT} ")
    for header in (None, "", "Bearer", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN):
        assert not both.check(header), header
    assert not Verifier(token=TOKEN).check(f"Bearer {OPENSSL_JWT}")
    assert Verifier().check(None)  # auth off


# ---------------------------------------------------------------- auth over HTTP


async def test_auth_guards_every_mutating_and_session_route(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, token=TOKEN, jwt_secret=SECRET)
    expired = issue_jwt(SECRET, ttl_s=60, now=time.time() - 3600)
    guarded = [
        ("POST", "/offer"),
        ("POST", "/reference"),
        ("GET", "/reference"),
        ("GET", "/sessions/abc"),
        ("PATCH", "/sessions/abc"),
        ("DELETE", "/sessions/abc"),
        ("GET", "/ice-servers"),
        ("POST", "/whip"),  # routes added later are covered too
        ("DELETE", "/whip/abc"),
    ]
    for method, path in guarded:
        for headers in ({}, bearer("wrong"), bearer(expired), {"Authorization": f"Basic {TOKEN}"}):
            resp = await client.request(method, path, data=b"{}", headers=headers)
            assert resp.status == 401, (method, path, headers)
            assert await resp.json() == UNAUTHORIZED  # the same words whatever went wrong
            assert resp.headers["WWW-Authenticate"] == "Bearer"
    # The right credential gets through to the handler (which then judges the request).
    for token in (TOKEN, OPENSSL_JWT, issue_jwt(SECRET, ttl_s=60)):
        assert (await client.get("/sessions/abc", headers=bearer(token))).status == 404
        assert (await client.post("/offer", data=b"{}", headers=bearer(token))).status == 400
    assert (await client.get("/ice-servers", headers=bearer(TOKEN))).status == 200
    # The page and the probes stay open, and the page learns that a token is needed.
    for path in ("/", "/web/app.js", "/health", "/metrics"):
        assert (await client.get(path)).status == 200, path
    assert (await (await client.get("/config")).json())["auth"] is True


def test_every_route_declares_its_policy_where_it_is_added() -> None:
    """The route table is the one place a route's rules live: each route has a
    declared policy, the mutating ones need auth, the costly ones are rate-limited,
    only the upload gets the image-sized body cap."""
    app = create_app(LOOPBACK)
    policies = app[ROUTE_POLICIES]
    table: dict[tuple[str, str], RoutePolicy] = {}
    for resource in app.router.resources():
        for route in resource:
            assert route in policies, f"{route.method} {resource.canonical} has no RoutePolicy"
            table[(route.method, resource.canonical)] = policies[route]
    assert all(p.auth for (method, _), p in table.items() if method not in SAFE_METHODS)
    assert {key for key, p in table.items() if p.rate_limited} == {
        ("POST", "/offer"),
        ("POST", "/whip"),
        ("POST", "/reference"),
    }
    assert {key for key, p in table.items() if p.body == "image"} == {("POST", "/reference")}
    for read in ("/sessions/{session_id}", "/reference", "/ice-servers"):
        assert table[("GET", read)].auth and table[("HEAD", read)].auth, read
    for page in ("/", "/health", "/config", "/metrics"):
        assert not table[("GET", page)].auth, page
    with pytest.raises(ValueError, match="cannot be open"):
        add_route(app, "POST", "/open-door", create_app, OPEN)  # type: ignore[arg-type]


async def test_auth_is_off_by_default(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    assert (await (await client.get("/config")).json())["auth"] is False
    assert (await client.get("/sessions/abc")).status == 404
    assert LOOPBACK.host == "127.0.0.1"  # and the server binds to loopback unless told


async def test_a_real_session_with_a_token(start_server: StartServer) -> None:
    server = await start_server(token=TOKEN)
    refused = Probe(base_url(server), options={"face": "invert"})
    with pytest.raises(Refused, match=r"offer refused: .*HTTP 401") as err:
        await refused.connect()
    assert err.value.status == 401 and err.value.permanent
    await refused.close(delete=False)
    probe = Probe(base_url(server), options={"face": "invert"}, token=TOKEN)
    try:
        await probe.connect()
        assert probe.session_id in server.app[SERVER].sessions
    finally:
        await probe.close()  # the DELETE carries the token too
    for _ in range(50):
        if not server.app[SERVER].sessions:
            break
        await asyncio.sleep(0.05)
    assert not server.app[SERVER].sessions


# ---------------------------------------------------------------- origins


async def test_origins_preflight_allow_list_and_csrf_refusal(aiohttp_client: Any) -> None:
    good = "https://studio.example"
    client = await client_for(aiohttp_client, allowed_origins=(good,), token=TOKEN)
    preflight = {"Access-Control-Request-Method": "POST"}
    resp = await client.options("/offer", headers={"Origin": good, **preflight})
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == good
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    resp = await client.options("/offer", headers={"Origin": EVIL, **preflight})
    assert resp.status == 403
    assert await resp.json() == {
        "error": "this origin may not call Mirage",
        "kind": "OriginNotAllowed",
    }
    assert "Access-Control-Allow-Origin" not in resp.headers
    # A "simple" cross-site POST (no preflight) is refused before auth or the handler.
    for method, path in (("POST", "/offer"), ("POST", "/reference"), ("DELETE", "/sessions/x")):
        resp = await client.request(
            method,
            path,
            data=b"x",
            headers={"Origin": EVIL, "Content-Type": "text/plain", **bearer(TOKEN)},
        )
        assert resp.status == 403, (method, path)
        assert (await resp.json())["kind"] == "OriginNotAllowed"
    # A read from an unlisted origin is answered, but without the header a browser needs.
    resp = await client.get("/health", headers={"Origin": EVIL})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    # The listed origin sees its responses, refusals included.
    resp = await client.post("/offer", data=b"{}", headers={"Origin": good})
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == good
    assert "WWW-Authenticate" in resp.headers["Access-Control-Expose-Headers"]
    resp = await client.post("/offer", data=b"{}", headers={"Origin": good, **bearer(TOKEN)})
    assert resp.status == 400 and resp.headers["Access-Control-Allow-Origin"] == good
    # The page Mirage serves itself (Origin = the Host it talks to) is always allowed.
    own = f"http://{client.server.host}:{client.server.port}"
    resp = await client.post("/offer", data=b"{}", headers={"Origin": own, **bearer(TOKEN)})
    assert resp.status == 400
    resp = await client.post("/offer", data=b"{}", headers={"Origin": "null", **bearer(TOKEN)})
    assert resp.status == 403  # sandboxed frames and file:// pages are cross-origin


def test_same_origin_compares_host_and_port() -> None:
    assert same_origin("http://127.0.0.1:7860", "127.0.0.1:7860")
    assert same_origin("https://Mirage.example", "mirage.example")  # proxy's $host, TLS in front
    assert same_origin("http://[::1]:7860", "[::1]:7860")
    assert not same_origin("http://127.0.0.1:7861", "127.0.0.1:7860")
    assert not same_origin("http://mirage.example:8080", "mirage.example")
    assert not same_origin("https://mirage.example.evil.example", "mirage.example")
    assert not same_origin("null", "127.0.0.1:7860")
    assert not same_origin("http://[bad", "127.0.0.1:7860")


async def test_dns_rebinding_is_refused_by_a_loopback_server_without_auth(
    aiohttp_client: Any,
) -> None:
    rebound = {"Host": "evil.example:7860", "Origin": "http://evil.example:7860"}
    open_client = await client_for(aiohttp_client)
    for method, path in (("GET", "/reference"), ("GET", "/config"), ("POST", "/offer")):
        resp = await open_client.request(method, path, data=b"{}", headers=rebound)
        assert resp.status == 403, (method, path)
        body = await resp.json()
        assert body["kind"] == "HostNotAllowed" and "MIRAGE_TOKEN" in body["error"]
    for host in ("localhost:7860", "127.0.0.1", "[::1]:7860"):
        assert (await open_client.get("/health", headers={"Host": host})).status == 200
    # Listing the name, or turning auth on, or listening beyond loopback lifts the guard.
    listed = await client_for(aiohttp_client, allowed_origins=("http://evil.example:7860",))
    assert (await listed.get("/config", headers=rebound)).status == 200
    with_token = await client_for(aiohttp_client, token=TOKEN)
    assert (await with_token.get("/config", headers=rebound)).status == 200
    assert (await with_token.get("/reference", headers=rebound)).status == 401
    public = await client_for(aiohttp_client, host="0.0.0.0")
    assert (await public.get("/config", headers={"Host": "mirage.example"})).status == 200


async def test_wildcard_origin_allows_any_page(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, allowed_origins=("*",))
    resp = await client.post("/offer", data=b"{}", headers={"Origin": EVIL})
    assert resp.status == 400 and resp.headers["Access-Control-Allow-Origin"] == EVIL


# ---------------------------------------------------------------- rate limit


def test_token_bucket_bursts_refills_and_stays_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=6, max_clients=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 6
    assert limiter.take("a") == pytest.approx(10.0)  # one token every 10 s
    now[0] = 5.0
    assert limiter.take("a") == pytest.approx(5.0)
    now[0] = 10.0
    assert limiter.take("a") == 0.0
    assert limiter.take("b") == 0.0  # another client has its own bucket
    for key in ("c", "d", "e", "f"):
        limiter.take(key)
    assert len(limiter) == 3  # old clients are forgotten, memory stays bounded


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    proxies = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_address("127.0.0.1", "203.0.113.7", proxies) == "203.0.113.7"
    # A client cannot hide behind a forged first hop: the right-most untrusted hop wins.
    assert client_address("127.0.0.1", "1.2.3.4, 203.0.113.7, 10.1.1.1", proxies) == "203.0.113.7"
    assert client_address("198.51.100.9", "203.0.113.7", proxies) == "198.51.100.9"
    assert client_address("127.0.0.1", "203.0.113.7", ()) == "127.0.0.1"
    assert client_address("127.0.0.1", "garbage", proxies) == "garbage"
    with pytest.raises(ValueError, match="trusted_proxies"):
        parse_networks(["not-an-address"])


async def test_offer_flood_gets_429_with_retry_after(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, offer_rate=3, trusted_proxies=("127.0.0.1",))
    for _ in range(3):
        assert (await client.post("/offer", data=b"{}")).status == 400
    resp = await client.post("/offer", data=b"{}")
    assert resp.status == 429
    body = await resp.json()
    assert body["kind"] == "RateLimited" and "too many requests to /offer" in body["error"]
    assert 1 <= int(resp.headers["Retry-After"]) <= 20
    # Other routes and other clients (behind the trusted proxy) are not affected.
    assert (await client.post("/reference", data=b"x")).status == 415
    other = {"X-Forwarded-For": "203.0.113.7"}
    assert (await client.post("/offer", data=b"{}", headers=other)).status == 400
    assert (await client.get("/health")).status == 200


# ---------------------------------------------------------------- body limits


async def test_oversized_bodies_get_413_before_they_are_read(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, max_offer_bytes=1000, max_image_bytes=50_000)
    for method, path in (("POST", "/offer"), ("PATCH", "/sessions/x"), ("POST", "/whip")):
        resp = await client.request(method, path, data=b"{" + b" " * 2000 + b"}")
        assert resp.status == 413, (method, path)
        body = await resp.json()
        assert body == {
            "error": "the request body is 2002 bytes; the limit is 1000 bytes",
            "kind": "TooLarge",
        }

    async def chunked() -> Any:  # no Content-Length: cut off while reading
        for _ in range(10):
            yield b" " * 500

    resp = await client.post("/offer", data=chunked())
    assert resp.status == 413 and (await resp.json())["kind"] == "TooLarge"
    resp = await client.post("/reference", data=b"\xff\xd8\xff" + b"\0" * 200_000)
    assert resp.status == 413 and "limit is" in (await resp.json())["error"]
    form = FormData()
    form.add_field("image", b"\xff\xd8\xff" + b"\0" * 80_000, filename="p.jpg")
    resp = await client.post("/reference", data=form)
    assert resp.status == 413
    # A chunked multipart body is capped by the same one check (no Content-Length to refuse).
    envelope = b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\n'

    async def chunked_form() -> Any:
        yield envelope
        for _ in range(40):
            yield b"\0" * 5000

    resp = await client.post(
        "/reference",
        data=chunked_form(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert resp.status == 413 and (await resp.json())["kind"] == "TooLarge"
    assert (await client.get("/health")).status == 200


# ---------------------------------------------------------------- images


def jpeg_with_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCam"  # maker: metadata that must not survive
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_exif_orientation_is_applied_like_pillow_does() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (6, 4, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        img = Image.fromarray(pixels)
        img.info["exif"] = exif.tobytes()
        want = np.asarray(ImageOps.exif_transpose(img))
        np.testing.assert_array_equal(_upright(pixels, orientation), want, str(orientation))


async def test_portrait_is_stored_and_served_upright_and_bare(aiohttp_client: Any) -> None:
    """EXIF turns the picture, then goes: neither the stored portrait nor the one the
    server hands back carries the upload's metadata (here, a planted camera maker)."""
    portrait = np.asarray(Image.open(MEDIA / "s0.jpg").convert("RGB"))[:300, :200]
    upload = jpeg_with_orientation(portrait, 6)  # stored turned; shown rotated 90°
    assert b"SecretCam" in upload and Image.open(io.BytesIO(upload)).getexif()
    upright = np.rot90(portrait, k=-1)
    out = decode_image(upload)
    assert out.shape == (200, 300, 3) and np.abs(out.astype(int) - upright).mean() < 6
    client = await client_for(aiohttp_client)
    resp = await client.post("/reference", data=upload, headers={"Content-Type": "image/jpeg"})
    assert resp.status == 200, await resp.text()
    stored = client.server.app[SERVER].reference
    assert isinstance(stored, np.ndarray) and stored.shape == (200, 300, 3)
    assert np.abs(stored.astype(int) - upright).mean() < 6
    served = await (await client.get("/reference")).read()
    assert b"SecretCam" not in served
    image = Image.open(io.BytesIO(served))
    assert "exif" not in image.info and not image.getexif(), dict(image.getexif())
    assert image.size == (300, 200)  # width × height: the upright picture


# ---------------------------------------------------------------- TURN


def test_turn_rest_credentials_match_coturn() -> None:
    # Reference value made with: printf %s 1700003600:alice | openssl dgst -sha1 -hmac s3cret -binary | base64
    assert turn_credentials("s3cret", 3600, "alice", now=1_700_000_000.4) == (
        "1700003600:alice",
        "YAFdW/YDZewZsR1QSgUk2IrfbRI=",
    )


async def test_ice_servers_hand_out_expiring_turn_credentials(aiohttp_client: Any) -> None:
    turn = ("turn:turn.example:3478?transport=udp", "turns:turn.example:5349")
    settings = {
        "ice_servers": ("stun:stun.example:3478",),
        "turn_urls": turn,
        "turn_secret": "s3cret",
        "turn_ttl_s": 600,
    }
    client = await client_for(aiohttp_client, **settings)
    before = time.time()
    resp = await client.get("/ice-servers")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["ttl_s"] == 600
    stun, relay = body["iceServers"]
    assert stun == {"urls": ["stun:stun.example:3478"]}
    assert relay["urls"] == list(turn)
    expiry, label = relay["username"].split(":")
    assert before + 600 - 1 <= int(expiry) <= time.time() + 600 and label == "mirage-page"
    assert turn_credentials("s3cret", 0, label, now=int(expiry)) == (
        relay["username"],
        relay["credential"],
    )
    own = rtc_ice_servers(LOOPBACK.replace(**settings))  # the server's peer connection
    assert own[1].username.endswith(":mirage-server") and own[1].credential
    plain = await client_for(aiohttp_client)
    assert (await (await plain.get("/ice-servers")).json()) == {"iceServers": [], "ttl_s": None}


# ---------------------------------------------------------------- configuration


def test_security_settings_from_env_and_flags() -> None:
    from mirage.cli import build_parser
    from mirage.cli.serve import settings_from_args
    from mirage.config import from_env

    env = {
        "MIRAGE_TOKEN": "  ",  # empty means unset, never "the empty token"
        "MIRAGE_JWT_SECRET": "s",
        "MIRAGE_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "MIRAGE_TRUSTED_PROXIES": "10.0.0.0/8",
        "MIRAGE_TURN_URLS": "turn:t.example:3478",
        "MIRAGE_TURN_SECRET": "ts",
        "MIRAGE_TURN_TTL_S": "120",
        "MIRAGE_MAX_IMAGE_BYTES": "1000",
    }
    s = from_env(env)
    assert s.token is None and s.jwt_secret == "s" and s.turn_secret == "ts"
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert s.trusted_proxies == ("10.0.0.0/8",) and s.turn_ttl_s == 120
    assert s.max_image_bytes == 1000 and s.offer_rate == 30.0
    argv = ["serve", "--allowed-origin", "https://c.example", "--offer-rate", "5"]
    argv += ["--trusted-proxy", "127.0.0.1", "--turn-url", "turn:x:3478", "--turn-ttl", "60"]
    s = settings_from_args(build_parser("serve").parse_args(argv), env)
    assert s.allowed_origins == ("https://c.example",) and s.offer_rate == 5.0
    assert s.trusted_proxies == ("127.0.0.1",) and s.turn_urls == ("turn:x:3478",)
    assert s.turn_ttl_s == 60 and s.jwt_secret == "s"


def test_mirage_token_prints_a_jwt_the_server_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mirage.cli import main

    monkeypatch.delenv("MIRAGE_JWT_SECRET", raising=False)
    assert main(["token"]) == 2
    assert "MIRAGE_JWT_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("MIRAGE_JWT_SECRET", SECRET)
    assert main(["token", "--ttl", "60", "--subject", "kiosk"]) == 0
    claims = verify_jwt(capsys.readouterr().out.strip(), SECRET, time.time())
    assert claims is not None and claims["sub"] == "kiosk"
    assert claims["exp"] - claims["iat"] == 60


# ---------------------------------------------------------------- the page


@pytest.mark.browser
def test_the_page_asks_for_a_token_and_connects_with_it(tmp_path: Path) -> None:
    """A real Chromium: the token field appears, a call without it says why, with it connects."""
    from playwright.sync_api import sync_playwright

    need_chromium()  # like test_browser.py: a missing browser fails in CI, never skips quietly

    from tests.browser_e2e import CHROMIUM, FLAGS

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [sys.executable, "server.py", "--port", str(port), "--ice-host", "127.0.0.1"]
    cmd += ["--face", "passthrough", "--voice", "passthrough"]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, "MIRAGE_TOKEN": TOKEN}, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                page = browser.new_page()
                page.goto(f"{url}/")
                page.wait_for_function("() => document.getElementById('face').options.length")
                assert page.is_visible("#token-row")
                page.click("#start")
                page.wait_for_function(
                    "() => /access token/.test(document.getElementById('status').textContent)",
                    timeout=20_000,
                )
                page.fill("#token", TOKEN)
                page.dispatch_event("#token", "change")
                page.click("#start")
                page.wait_for_function(
                    "() => window.mirage.stats().framesReceived > 10", timeout=60_000
                )
                assert page.evaluate("() => sessionStorage.getItem('mirage.token')") == TOKEN
                assert (page.get_attribute("#ref-preview", "src") or "").startswith("blob:")
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
