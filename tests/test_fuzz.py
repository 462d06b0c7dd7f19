"""Fuzzing the HTTP surface: no request may produce a 500 or take the server down.

Hypothesis drives a real Mirage app on a loopback port (in its own thread and
event loop, so the property tests stay synchronous and shrink normally) with
random methods, paths, headers, content types and bodies: junk, deep JSON,
offer-shaped JSON around a real SDP, damaged images, multipart forms, bodies
over the limits. The parsers it reaches (JWT, image, multipart) are fuzzed
directly too. A failure prints the smallest request that breaks the rule.
``MIRAGE_FUZZ_EXAMPLES=5000`` hunts longer; ``MIRAGE_FUZZ_LOG=1`` (with ``-s``)
prints every status, to see which handlers the examples reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mirage.app import create_app
from mirage.client.probe import Probe
from mirage.images import decode_image
from mirage.models import registry
from mirage.models.base import BadInput, MirageError
from mirage.models.options import Option
from mirage.security.auth import Verifier, verify_jwt
from mirage.state import SERVER
from mirage.webrtc import aiortc_compat
from mirage.webrtc.signalling import Offer
from tests.server_fixtures import LOOPBACK

FUZZ_SETTINGS = LOOPBACK.replace(
    offer_rate=0,  # the limiter has its own tests; here it would hide the handlers
    max_offer_bytes=8 * 1024,
    max_image_bytes=64 * 1024,
    max_sessions=2,
    media_timeout_s=1.0,
    allowed_origins=("https://ok.example",),
    test_backends=False,  # the public surface: fault-injection backends must be refused
    # No weights here, whatever the machine has: a valid liveportrait/rvc request is a
    # 503 WeightsMissing, never minutes of loading inside a property test.
    models_dir=str(Path(tempfile.gettempdir()) / "mirage-fuzz-no-weights"),
)
#: 503 is a legitimate answer (full, weights missing), never a crash.
ALLOWED_5XX = {503: {"ServerFull", "WeightsMissing", "BackendUnavailable"}}
#: Examples per property; ``MIRAGE_FUZZ_EXAMPLES=5000`` for a long hunt (CI keeps it short).
EXAMPLES = int(os.environ.get("MIRAGE_FUZZ_EXAMPLES", "120"))


def fuzz(share: float = 1.0) -> settings:
    return settings(
        max_examples=max(10, int(EXAMPLES * share)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# The server thread (aiortc) draws from ``random`` while Hypothesis generates; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")


@dataclass
class Live:
    port: int
    sdp: str
    loop: asyncio.AbstractEventLoop
    app: web.Application
    probe: Probe  # a real peer sending media, so one session stays alive to poke at


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """One app for the whole module, served from a background thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    found: dict[str, Any] = {}

    async def start() -> web.AppRunner:
        found["app"] = create_app(FUZZ_SETTINGS)
        runner = web.AppRunner(found["app"])
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        found["port"] = runner.addresses[0][1]
        probe = Probe(f"http://127.0.0.1:{found['port']}", fps=10, options={"voice": "dsp"})
        await probe.connect()
        found["probe"] = probe
        pc = RTCPeerConnection()  # a real offer, so options reach the backends
        pc.addTransceiver("video", "sendrecv")
        pc.addTransceiver("audio", "sendrecv")
        with aiortc_compat.ice_hosts(("127.0.0.1",)):
            await pc.setLocalDescription(await pc.createOffer())
        found["sdp"] = pc.localDescription.sdp
        await pc.close()
        return runner

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(found["probe"].close())
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="fuzz-server", daemon=True)
    thread.start()
    assert ready.wait(120), "the fuzz server did not start"
    yield Live(found["port"], found["sdp"], loop, found["app"], found["probe"])
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)


def send(
    live: Live, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def assert_no_crash(status: int, body: bytes, what: str) -> None:
    if status < 500:
        return
    kind = None
    with contextlib.suppress(ValueError, AttributeError):
        kind = json.loads(body).get("kind")
    assert kind in ALLOWED_5XX.get(status, set()), f"{what} → {status} {body[:300]!r}"


# ---------------------------------------------------------------- strategies

header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=60
)
token_text = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.%~", min_size=0, max_size=24)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | header_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(header_text, inner, max_size=4),
    max_leaves=20,
)
backend_names = st.sampled_from(
    ["auto", "passthrough", "invert", "warp", "dsp", "hang", "slow", "delay", "nope", ""]
)
options = st.fixed_dictionaries(
    {},
    optional={
        "face": backend_names | json_values,
        "voice": backend_names | json_values,
        "face_options": st.dictionaries(header_text, json_values, max_size=3) | json_values,
        "voice_options": st.dictionaries(
            st.sampled_from(["preset", "pitch", "semitones", "formant", "x"]) | header_text,
            json_values,
            max_size=3,
        )
        | json_values,
        "quality": st.sampled_from(["auto", "high", 0, 4, 99, -1, True, None]) | json_values,
    },
)


def _image_bytes(fmt: str) -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


IMAGES = [_image_bytes(fmt) for fmt in ("JPEG", "PNG", "WEBP")]


@st.composite
def damaged_image(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(IMAGES)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut])


def some_sdp(sdp: str) -> st.SearchStrategy[str]:
    """Mostly the real offer (so sessions get made), sometimes cut or replaced."""
    return st.sampled_from([sdp] * 4 + [sdp[: len(sdp) // 2], "v=0\r\n"]) | header_text


@st.composite
def offer_body(draw: st.DrawFn, sdp: str) -> bytes:
    body: dict[str, Any] = {
        "type": draw(st.sampled_from(["offer"] * 6 + ["answer", None, 1])),
        "sdp": draw(some_sdp(sdp)),
    }
    if draw(st.booleans()):
        body["options"] = draw(options | json_values)
    return json.dumps(body).encode()


@st.composite
def multipart_body(draw: st.DrawFn) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from(["b0undary", "x"]))
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["image", "file", ""]) | token_text)
        payload = draw(damaged_image() | st.binary(max_size=300))
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="a"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + payload
            + b"\r\n"
        )
    tail = draw(st.sampled_from([f"--{boundary}--\r\n".encode(), b"", b"--junk"]))
    return b"".join(parts) + tail, f"multipart/form-data; boundary={boundary}"


#: (method, path, the body kinds that route expects): most examples aim at a real
#: route with a plausible body, so they get past routing into the handlers.
ROUTES = [
    ("POST", "/offer", ("offer", "offer", "json")),
    ("POST", "/whip{query}", ("sdp", "sdp", "junk")),
    ("POST", "/whep/{sid}", ("sdp", "junk")),
    ("POST", "/reference{query}", ("image", "image", "multipart")),
    ("PATCH", "/sessions/{sid}", ("json",)),
    ("GET", "/sessions/{sid}", ("none",)),
    ("DELETE", "/sessions/{sid}", ("none",)),
    ("DELETE", "/whip/{sid}", ("none",)),
    ("PATCH", "/whip/{sid}", ("sdp", "junk")),
    ("DELETE", "/whep/{sid}/{sid}", ("none",)),
    ("PATCH", "/whep/{sid}/{sid}", ("sdp",)),
    ("OPTIONS", "/whip", ("none",)),
    ("GET", "/reference", ("none",)),
    ("GET", "/ice-servers", ("none",)),
    ("GET", "/config", ("none",)),
    ("GET", "/health", ("none",)),
    ("GET", "/metrics", ("none",)),
    ("GET", "/gpu", ("none",)),
    ("GET", "/", ("none",)),
    ("GET", "/web/app.js", ("none",)),
]
METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS", "HEAD"]
ANY_PATHS = ["/web/..%2f{sid}", "/{sid}", "/sessions/", "/whep/{sid}/{sid}/x", "/offer/{sid}"]
QUERY_KEYS = ["face", "voice", "preset", "quality", "session_id", "x"]


@st.composite
def request(draw: st.DrawFn, sdp: str) -> tuple[str, str, bytes, dict[str, str]]:
    sid = draw(token_text)
    query = draw(st.dictionaries(st.sampled_from(QUERY_KEYS), token_text, max_size=3))
    query_text = ("?" + "&".join(f"{k}={v}" for k, v in query.items())) if query else ""
    if draw(st.integers(0, 4)):  # 4 in 5 aim at a real route
        method, template, kinds = draw(st.sampled_from(ROUTES))
    else:
        method = draw(st.sampled_from(METHODS))
        template = draw(st.sampled_from([r[1] for r in ROUTES] + ANY_PATHS))
        kinds = ("junk", "json", "offer", "image", "multipart", "huge", "none")
    path = template.format(sid=sid, query=query_text)
    headers: dict[str, str] = {}
    kind = draw(
        st.sampled_from([*kinds, "junk", "huge"])
        if draw(st.integers(0, 5)) == 0
        else st.sampled_from(kinds)
    )
    if kind == "none":
        body = b""
    elif kind == "junk":
        body = draw(st.binary(max_size=400))
    elif kind == "json":
        body = json.dumps(draw(options | json_values)).encode()
    elif kind == "offer":
        body = draw(offer_body(sdp))
    elif kind == "sdp":
        body = draw(some_sdp(sdp)).encode()
        headers["Content-Type"] = draw(st.sampled_from(["application/sdp"] * 4 + ["text/plain"]))
    elif kind == "image":
        body = draw(damaged_image())
    elif kind == "multipart":
        body, headers["Content-Type"] = draw(multipart_body())
    else:
        body = b"{" + b" " * draw(st.integers(8 * 1024, 80 * 1024)) + b"}"
    if "Content-Type" not in headers and draw(st.integers(0, 3)) == 0:
        headers["Content-Type"] = draw(
            st.sampled_from(
                [
                    "application/json",
                    "application/sdp",
                    "image/png",
                    "text/plain",
                    "multipart/form-data",
                    "multipart/form-data; boundary=",
                ]
            )
            | header_text
        )
    if draw(st.integers(0, 3)) == 0:
        extra = draw(
            st.dictionaries(
                st.sampled_from(["Authorization", "Origin", "X-Forwarded-For", "If-Match"]),
                st.sampled_from(["Bearer x", "https://ok.example", "null", "1.2.3.4, ::1"])
                | header_text,
                max_size=3,
            )
        )
        headers.update(extra)
    if method == "OPTIONS" and draw(st.booleans()):
        headers["Access-Control-Request-Method"] = "POST"
    return method, path, body, headers


# ---------------------------------------------------------------- properties


def test_no_request_makes_a_500_or_kills_the_server(live: Live) -> None:
    @fuzz()
    @given(request(live.sdp))
    def check(req: tuple[str, str, bytes, dict[str, str]]) -> None:
        method, path, body, headers = req
        status, answer, _ = send(live, method, path, body, headers)
        if os.environ.get("MIRAGE_FUZZ_LOG"):
            print("FUZZ", status, method, path.split("?")[0][:12], answer[:80])
        assert_no_crash(status, answer, f"{method} {path} {headers} {body[:200]!r}")

    check()
    status, answer, _ = send(live, "GET", "/health", b"", {})
    assert status == 200 and json.loads(answer)["status"] == "ok"


def test_the_session_api_survives_anything_sent_to_a_live_session(live: Live) -> None:
    sid = live.probe.session_id
    assert sid in live.app[SERVER].sessions

    @fuzz(0.4)
    @given(
        st.sampled_from(
            [
                ("PATCH", f"/sessions/{sid}"),
                ("PATCH", f"/sessions/{sid}"),
                ("GET", f"/sessions/{sid}"),
                ("PATCH", f"/whip/{sid}"),
                ("POST", f"/whep/{sid}"),
                ("POST", f"/reference?session_id={sid}"),
            ]
        ),
        st.one_of(
            st.builds(lambda o: json.dumps(o).encode(), options | json_values),
            damaged_image(),
            st.binary(max_size=200),
        ),
    )
    def check(route: tuple[str, str], body: bytes) -> None:
        method, path = route
        status, answer, _ = send(live, method, path, body, {})
        assert_no_crash(status, answer, f"{method} {path} {body[:200]!r}")

    check()
    assert sid in live.app[SERVER].sessions, "the fuzzed session died"
    status, _, _ = send(live, "GET", f"/sessions/{sid}", b"", {})
    assert status == 200


def test_backend_options_only_ever_fail_with_a_typed_error(live: Live) -> None:
    server = live.app[SERVER]

    @fuzz(0.4)
    @given(options)
    def check(opts: dict[str, Any]) -> None:
        def name(key: str) -> str | None:
            value = opts.get(key)
            return value if isinstance(value, str) else None

        def extra(key: str) -> dict[str, Any]:
            value = opts.get(key)
            return value if isinstance(value, dict) else {}

        offer = Offer(
            live.sdp, name("face"), name("voice"), extra("face_options"), extra("voice_options")
        )
        future = asyncio.run_coroutine_threadsafe(server.make_backends(offer), live.loop)
        try:
            backends = future.result(60)
        except MirageError as exc:
            assert 400 <= exc.status < 500 or exc.status == 503, exc
        else:
            assert backends.animator is not None and backends.converter is not None

    check()


# ------------------------------------------------- options against the schemas, live

HOSTILE_VALUES = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -1e308, 10**30, -1, 0, 0.5, True, None, "", "../x"]
)


def in_range(option: Option) -> st.SearchStrategy[Any]:
    if option.type == "float":
        return st.floats(option.low, option.high)
    if option.type == "int":
        return st.integers(int(option.low or 0), int(option.high or 0))
    if option.type == "bool":
        return st.booleans()
    if option.type == "choice":
        return st.sampled_from(option.choices)
    return st.just("rvc/model.pth")


@st.composite
def schema_options(draw: st.DrawFn) -> dict[str, Any]:
    """A backend (test ones too, which must be refused) with options near its schema:
    real names with values in range, at the edges, NaN/inf, wrong types; unknown names."""
    backend = draw(st.sampled_from(registry.BACKENDS))
    chosen: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 3))):
        if backend.options and draw(st.integers(0, 4)):
            option = draw(st.sampled_from(backend.options))
            chosen[option.name] = draw(in_range(option) | HOSTILE_VALUES | json_values)
        else:
            chosen[draw(header_text)] = draw(json_values)
    return {backend.kind: backend.name, f"{backend.kind}_options": chosen}


TEST_ONLY = {(b.kind, b.name) for b in registry.BACKENDS if b.testing}


def process_threads() -> set[str]:
    """Every thread but the event loop's executor (its pool grows once and stays)."""
    return {
        f"{t.name}#{t.ident}" for t in threading.enumerate() if not t.name.startswith("asyncio")
    }


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_schema_options_through_offer_and_whip_never_5xx_and_leave_nothing(live: Live) -> None:
    """Real SDP offers with options near each backend's schema, to /offer (JSON, NaN and
    Infinity included) and /whip (the query's face/voice/preset): 4xx or a session,
    which is deleted at once; never a 5xx but the typed 503s."""
    threads, fds = process_threads(), open_fds()
    made = 0

    @fuzz(0.5)
    @given(schema_options(), st.sampled_from(["offer", "whip"]))
    def check(opts: dict[str, Any], route: str) -> None:
        nonlocal made
        if route == "offer":
            body = json.dumps({"type": "offer", "sdp": live.sdp, "options": opts}).encode()
            status, answer, _ = send(live, "POST", "/offer", body, {})
            location = f"/sessions/{json.loads(answer)['session_id']}" if status == 200 else ""
        else:
            kind = "face" if "face" in opts else "voice"
            query = f"{kind}={opts[kind]}"
            preset = opts.get("voice_options", {}).get("preset")
            if preset is not None:
                query += f"&preset={preset}"
            headers = {"Content-Type": "application/sdp"}
            status, answer, got = send(live, "POST", f"/whip?{query}", live.sdp.encode(), headers)
            location = got.get("Location", "") if status == 201 else ""
        assert_no_crash(status, answer, f"{route} {opts}")
        if location:  # a valid request: a real session, closed at once
            made += 1
            kind = "face" if "face" in opts else "voice"
            assert (kind, opts[kind]) not in TEST_ONLY, f"a client reached {opts[kind]}"
            assert send(live, "DELETE", location, b"", {})[0] == 200
        elif status < 500:
            assert 400 <= status < 500, (status, answer[:200])

    check()
    status, answer, _ = send(live, "GET", "/health", b"", {})
    assert status == 200 and json.loads(answer)["status"] == "ok"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (process_threads() <= threads and open_fds() <= fds):
        time.sleep(0.2)  # closed sessions' threads and sockets finish a moment later
    assert process_threads() <= threads, f"threads left: {process_threads() - threads}"
    assert open_fds() <= fds, f"{open_fds() - fds} more file descriptors ({made} sessions)"


@fuzz()
@given(st.binary(max_size=600) | damaged_image())
def test_image_decoder_only_ever_refuses_with_a_typed_error(data: bytes) -> None:
    try:
        image = decode_image(data)
    except BadInput as exc:
        assert exc.status in (400, 413, 415) and str(exc)
    else:
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


@fuzz()
@given(header_text | st.builds("Bearer {}.{}.{}".format, token_text, token_text, token_text))
def test_random_credentials_are_refused_without_raising(header: str) -> None:
    assert not Verifier(token="t0ken-that-is-long", jwt_secret="s").check(header)
    token = header.removeprefix("Bearer ")
    assert verify_jwt(token, "s", 0.0) is None
