"""Backend options: one schema per backend, checked once before anything is built, and
the fault-injection backends out of reach unless the process turns on the test switch.

The hostile battery runs against a real server on loopback with real SDP offers: every
request gets a 4xx naming what was wrong, /health stays 200, and no thread or file
descriptor is left behind.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from mirage.client.probe import Probe
from mirage.config import from_env
from mirage.engine.supervised import SupervisedConverter
from mirage.engine.voicechain import CleanVoice
from mirage.models import registry
from mirage.models.base import BadInput, UnknownBackend
from mirage.models.options import Option
from mirage.models.voice.dsp import DspConverter
from mirage.state import SERVER
from mirage.webrtc import aiortc_compat
from tests.conftest import MEDIA
from tests.server_fixtures import StartServer, base_url

ROOT = Path(__file__).resolve().parents[1]
TEST_BACKENDS = sorted({(b.kind, b.name) for b in registry.BACKENDS if b.testing})
USER_BACKENDS = [b for b in registry.BACKENDS if not b.testing]


# ------------------------------------------------------------------ the schemas


def _bad_values(option: Option) -> list[Any]:
    """Values ``option`` must refuse: wrong types, NaN/inf, just outside its range."""
    wrong: list[Any] = [[1], {"a": 1}, "x" * 200]
    if option.type in ("float", "int"):
        assert option.low is not None and option.high is not None
        span = option.high - option.low
        out = [option.low - max(1.0, span), option.high + max(1.0, span), 1e300, -1e300]
        out = [v for v in out if v != option.off]
        wrong += [math.nan, math.inf, -math.inf, True, str(option.low), *out]
        if option.type == "int":
            wrong.append(option.low + 0.5)
    elif option.type == "bool":
        wrong += [1, 0, "true", "yes"]
    elif option.type == "choice":
        wrong += ["nope", True, 3.5]
    else:
        wrong += ["../model.pth", "/etc/passwd", "rvc/../../x.pth", "a/b/c.pth", "..", ".hidden"]
        wrong += ["rvc/.hidden", "", 7]
    if not option.nullable:
        wrong.append(None)
    return wrong


SCHEMA_CASES = [
    (b.kind, b.name, option, value)
    for b in registry.BACKENDS
    for option in b.options
    for value in _bad_values(option)
]


@pytest.mark.parametrize(
    ("kind", "name", "option", "value"),
    SCHEMA_CASES,
    ids=[f"{c[1]}.{c[2].name}={c[3]!r:.20}" for c in SCHEMA_CASES],
)
def test_a_bad_option_value_is_refused_naming_the_option_and_its_range(
    kind: registry.Kind, name: str, option: Option, value: Any
) -> None:
    with pytest.raises(BadInput) as refused:
        registry.validate(kind, name, {option.name: value}, testing=True)
    message = str(refused.value)
    assert f"option {option.name} must be {option.allowed()}" in message, message


@pytest.mark.parametrize("backend", registry.BACKENDS, ids=lambda b: f"{b.kind}-{b.name}")
def test_every_default_passes_and_every_option_reaches_the_constructor(
    backend: registry.Backend,
) -> None:
    """A schema that drifts from its backend fails here: an option the constructor
    does not take, or a default the schema itself would refuse."""
    defaults = {o.name: o.default for o in backend.options}
    assert registry.validate(backend.kind, backend.name, defaults, testing=True) == defaults
    factory = registry._resolve(backend.factory)
    parameters = inspect.signature(factory).parameters
    if backend.name == "warp":
        from mirage.models.avatar.warp.animator import WarpConfig

        parameters = inspect.signature(WarpConfig).parameters
    for option in backend.options:
        assert option.name in parameters, f"{backend.name} takes no {option.name}"
        default = parameters[option.name].default
        if option.default is not None and default is not inspect.Parameter.empty:
            assert option.default == default, f"{backend.name}.{option.name} default drifted"


def test_dsp_schema_agrees_with_the_converter_and_the_presets() -> None:
    from mirage.models.voice import dsp, presets

    schema = {o.name: o for o in registry.schema("voice", "dsp")}
    assert (schema["block_ms"].low, schema["block_ms"].high) == dsp.BLOCK_MS_RANGE
    assert (schema["semitones"].low, schema["semitones"].high) == presets.SEMITONE_RANGE
    assert (schema["formant"].low, schema["formant"].high) == presets.FORMANT_RANGE
    assert set(schema["preset"].choices) == set(presets.presets())
    live = {o.name for o in schema.values() if o.live}
    assert live == {"preset", *presets.PARAM_NAMES}, "PATCH must reach every live setting"


def test_unknown_and_python_only_options_are_refused_with_the_known_ones_listed() -> None:
    for kind, name, options in (
        ("voice", "dsp", {"pitch": 3}),
        ("face", "warp", {"clock": 1}),  # Python-only: a client cannot set it
        ("face", "warp", {"smoothing": {"beta": 1}}),
        ("face", "liveportrait", {"compile": True}),  # minutes of compile in a thread
        ("face", "passthrough", {"x": 1}),
    ):
        with pytest.raises(BadInput, match=rf"unknown {name} option\(s\) .*; known: "):
            registry.validate(kind, name, options)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="block_ms"):  # not a live setting
        registry.validate("voice", "dsp", {"block_ms": 100}, live=True)


@pytest.mark.parametrize(("kind", "name"), TEST_BACKENDS)
def test_fault_injection_backends_need_the_test_switch(kind: registry.Kind, name: str) -> None:
    with pytest.raises(UnknownBackend) as refused:
        registry.validate(kind, name, {})
    assert "hang" not in str(refused.value).split("known:")[1]
    registry.validate(kind, name, {}, testing=True)


def test_the_switch_is_read_once_from_the_environment() -> None:
    assert from_env({}).test_backends is False
    assert from_env({"MIRAGE_TEST_BACKENDS": "1"}).test_backends is True
    assert from_env({"MIRAGE_TEST_BACKENDS": "0"}).test_backends is False


def test_render_refuses_a_test_backend_without_the_switch(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MIRAGE_TEST_BACKENDS"}
    env["PYTHONPATH"] = str(ROOT)
    out = tmp_path / "out.mp4"
    args = ["--reference", str(MEDIA / "s0.jpg"), "--driving", str(MEDIA / "d0.mp4")]
    args += ["--out", str(out), "--face", "hang", "--voice", "passthrough", "-q"]
    cmd = [sys.executable, "-m", "mirage", "render", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and not out.exists()
    assert "unknown face backend 'hang'" in done.stderr, done.stderr[-500:]


# ------------------------------------------------------------------ a live server


async def real_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", "sendrecv")
    pc.addTransceiver("audio", "sendrecv")
    with aiortc_compat.ice_hosts(("127.0.0.1",)):
        await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def process_threads() -> set[str]:
    """Every thread but the event loop's executor (its pool grows once and stays)."""
    return {
        f"{t.name}#{t.ident}" for t in threading.enumerate() if not t.name.startswith("asyncio_")
    }


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


#: (options, the option or backend the 400 must name). NaN and Infinity are sent as
#: the JSON extensions Python's parser (the server's) accepts.
HOSTILE_OFFERS: list[tuple[dict[str, Any], str]] = [
    ({"face": "hang"}, "unknown face backend 'hang'"),
    ({"voice": "hang"}, "unknown voice backend 'hang'"),
    ({"face": "slow", "face_options": {"delay_ms": 1e9}}, "unknown face backend 'slow'"),
    ({"voice": "delay", "voice_options": {"delay_ms": 1e9}}, "unknown voice backend 'delay'"),
    ({"face": "invert"}, "unknown face backend 'invert'"),
    ({"voice": "failing"}, "unknown voice backend 'failing'"),
    ({"voice": "dsp", "voice_options": {"block_ms": 1e9}}, "option block_ms must be"),
    ({"voice": "dsp", "voice_options": {"semitones": math.nan}}, "option semitones must be"),
    ({"voice": "dsp", "voice_options": {"formant": math.inf}}, "option formant must be"),
    ({"voice": "dsp", "voice_options": {"preset": ["bright"]}}, "option preset must be"),
    ({"voice": "dsp", "voice_options": {"whisper": "maybe"}}, "option whisper must be"),
    ({"voice": "dsp", "voice_options": {"pitch": 3}}, "unknown dsp option(s) pitch"),
    ({"voice": "passthrough", "voice_options": {"block_ms": 1e12}}, "option block_ms must be"),
    ({"voice": "passthrough", "voice_options": {"sample_rate": 10**9}}, "option sample_rate"),
    ({"face": "warp", "face_options": {"landmark_side": 10**9}}, "option landmark_side must"),
    ({"face": "warp", "face_options": {"neutral_frames": -1}}, "option neutral_frames must"),
    ({"face": "warp", "face_options": {"ease_s": 0}}, "option ease_s must be"),
    ({"face": "warp", "face_options": {"grid": 3}}, "option grid must be"),
    ({"face": "warp", "face_options": {"clock": "now"}}, "unknown warp option(s) clock"),
    ({"face": "liveportrait", "face_options": {"compile": True}}, "unknown liveportrait"),
    ({"face": "liveportrait", "face_options": {"detect_every": 0}}, "option detect_every"),
    ({"voice": "rvc", "voice_options": {"model": "../../etc/passwd"}}, "option model must be"),
    ({"voice": "rvc", "voice_options": {"context_s": 1e9}}, "option context_s must be"),
    ({"face_options": {"bogus": 1}}, "unknown passthrough option(s) bogus"),
]
HOSTILE_WHIP = [
    ("face=hang", "unknown face backend 'hang'"),
    ("voice=delay", "unknown voice backend 'delay'"),
    ("face=slow&voice=hang", "unknown face backend 'slow'"),
    ("voice=dsp&preset=nope", "option preset must be"),
    ("face=warp&delay_ms=1e9", "unknown query parameter"),
]


async def test_a_hostile_option_battery_is_all_4xx_and_leaves_nothing_behind(
    start_server: StartServer,
) -> None:
    server = await start_server(test_backends=False, face="passthrough", voice="dsp")
    url = base_url(server)
    sdp = await real_offer()
    async with aiohttp.ClientSession() as http, http.get(f"{url}/health") as resp:
        assert resp.status == 200  # one warm-up: the imports and sockets of a first request
    threads, fds = process_threads(), open_fds()
    async with aiohttp.ClientSession() as http:
        for options, named in HOSTILE_OFFERS:
            body = json.dumps({"type": "offer", "sdp": sdp, "options": options})  # NaN as NaN
            headers = {"Content-Type": "application/json"}
            async with http.post(f"{url}/offer", data=body, headers=headers) as resp:
                answer = await resp.json()
                assert resp.status == 400, (options, resp.status, answer)
                assert named in answer["error"], (options, answer)
        for query, named in HOSTILE_WHIP:
            headers = {"Content-Type": "application/sdp"}
            async with http.post(f"{url}/whip?{query}", data=sdp, headers=headers) as resp:
                text = await resp.text()
                assert resp.status == 400, (query, resp.status, text)
                assert named in text, (query, text)
        async with http.get(f"{url}/health") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
    assert not server.app[SERVER].sessions
    for _ in range(50):  # the server side of the client's sockets closes a moment later
        if open_fds() <= fds:
            break
        await asyncio.sleep(0.05)
    assert process_threads() == threads, "a refused request started a thread"
    assert open_fds() <= fds, "a refused request left a file descriptor open"


async def test_live_changes_are_checked_before_anything_changes(
    start_server: StartServer,
) -> None:
    server = await start_server(test_backends=False)
    url = base_url(server)
    probe = Probe(url, fps=10, options={"voice": "dsp", "voice_options": {"preset": "deep"}})
    await probe.connect()
    try:
        session = server.app[SERVER].sessions[probe.session_id]
        supervised = session.backends.converter
        assert isinstance(supervised, SupervisedConverter)
        chain = supervised.guard.model  # the voice chain, the dsp behind it
        assert isinstance(chain, CleanVoice) and isinstance(chain.inner, DspConverter)
        dsp = chain.inner
        before = dsp.params
        patch = f"{url}/sessions/{probe.session_id}"
        async with aiohttp.ClientSession() as http:
            for change, named in (
                ({"semitones": 1e9}, "option semitones must be"),
                ({"semitones": 3, "formant": math.nan}, "option formant must be"),
                ({"block_ms": 100}, "unknown dsp live option(s) block_ms"),
                ({"preset": "giant", "whisper": 2}, "option whisper must be"),
            ):
                body = json.dumps({"quality": 2, "voice_options": change})
                async with http.patch(patch, data=body) as resp:
                    answer = await resp.json()
                    assert resp.status == 400 and named in answer["error"], answer
                assert dsp.params == before
                assert session.video is not None and session.video.controller.pinned is None
            body = json.dumps({"voice_options": {"semitones": 3}})
            async with http.patch(patch, data=body) as resp:
                assert resp.status == 200, await resp.text()
        assert dsp.params.semitones == 3.0
    finally:
        await probe.close()


def test_security_md_lists_every_option_and_its_range() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    assert "MIRAGE_TEST_BACKENDS=1" in text
    for backend in registry.BACKENDS:
        for option in backend.options:
            live = " (live)" if option.live else ""
            test = " (test)" if backend.testing else ""
            row = f"| {backend.kind} `{backend.name}`{test} | `{option.name}`{live} | {option.allowed()} |"
            assert row in text, f"SECURITY.md lacks (or has an old) row: {row}"


async def test_config_publishes_the_schemas_of_user_backends_only(
    start_server: StartServer,
) -> None:
    server = await start_server(test_backends=False)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base_url(server)}/config") as resp,
    ):
        config = await resp.json()
    published = config["backend_options"]
    assert set(published["voice"]) == {"passthrough", "dsp", "rvc"}
    assert "hang" not in published["face"]
    semitones = next(o for o in published["voice"]["dsp"] if o["name"] == "semitones")
    assert semitones == {
        "name": "semitones",
        "type": "float",
        "default": None,
        "allowed": "a number in -12..12 or null",
        "live": True,
    }
