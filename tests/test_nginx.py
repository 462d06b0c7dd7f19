"""Scale-out for real: Debian's nginx with deploy/nginx/mirage.conf in front of two
Mirage processes on loopback, real aiortc peers offering through it.

The shipped file is used as is; only its upstream addresses and listen port are
swapped for loopback ones, so the routing rules under test are the shipped rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from mirage.client.probe import Probe
from mirage.webrtc import aiortc_compat
from tests.conftest import MEDIA

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "deploy" / "nginx" / "mirage.conf"
NGINX = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run does)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def render_conf(upstreams: dict[str, int], listen: int) -> str:
    """deploy/nginx/mirage.conf with each ``mirage-<x>:7860`` and ``listen 80`` moved
    to loopback; fails if the shipped file no longer has what it replaces."""
    text = CONF.read_text()
    for name, port in upstreams.items():
        old = f"mirage-{name}:7860"
        assert old in text, f"{CONF} has no upstream {old}"
        text = text.replace(old, f"127.0.0.1:{port}")
    assert text.count("listen 80;") == 1, f"{CONF} must listen on port 80 exactly once"
    return text.replace("listen 80;", f"listen 127.0.0.1:{listen};")


def nginx_main_conf(tmp: Path, site: Path) -> str:
    """A minimal main config around the site file, every path inside ``tmp``."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read tmp
    temps = "".join(
        f"    {kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        '    log_format upstreams "$request_method $uri $status'
        ' [$upstream_addr] [$upstream_status]";\n'
        f"    access_log {tmp / 'access.log'} upstreams;\n"
        f"{temps}"
        f"    include {site};\n"
        "}\n"
    )


@dataclass
class Instance:
    name: str
    url: str
    port: int
    proc: subprocess.Popen[bytes]


def start_instance(name: str, max_sessions: int, log: Path) -> Instance:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "server.py"), "--port", str(port)]
    cmd += ["--instance-id", name, "--max-sessions", str(max_sessions)]
    cmd += ["--ice-host", "127.0.0.1", "--face", "passthrough", "--voice", "passthrough"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return Instance(name, f"http://127.0.0.1:{port}", port, proc)


async def wait_ready(
    http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{url}/health") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.2)
    pytest.fail(f"{url} not ready in 60 s:\n{log.read_text()[-2000:]}")


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to all at once (each closes its sessions), then SIGKILL stragglers
    (a loaded machine can take seconds just to tear down the interpreter)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 3
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Cluster:
    proxy: str
    instances: dict[str, Instance]
    access_log: Path
    http: aiohttp.ClientSession

    async def sessions_on(self, name: str) -> int:
        async with self.http.get(f"{self.instances[name].url}/health") as resp:
            count: int = (await resp.json())["sessions"]
            return count

    async def holds(self, name: str, session_id: str) -> bool:
        """Asked directly (not through nginx): does instance ``name`` hold it?"""
        async with self.http.get(f"{self.instances[name].url}/sessions/{session_id}") as resp:
            return resp.status == 200


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        stop_all(procs)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Instance ``a`` (1 session) and ``b`` (3 sessions) behind nginx."""
    assert NGINX is not None
    with processes() as procs:
        a = start_instance("a", 1, tmp_path / "a.log")
        procs.append(a.proc)
        b = start_instance("b", 3, tmp_path / "b.log")
        procs.append(b.proc)
        listen = free_port()
        site = tmp_path / "mirage.conf"
        site.write_text(render_conf({"a": a.port, "b": b.port}, listen))
        main = tmp_path / "nginx.conf"
        main.write_text(nginx_main_conf(tmp_path, site))
        test = subprocess.run(
            [NGINX, "-t", "-p", str(tmp_path), "-c", str(main), "-e", "stderr"],
            capture_output=True,
            text=True,
        )
        assert test.returncode == 0, f"nginx rejects the config:\n{test.stderr}"
        nginx_cmd = [NGINX, "-p", str(tmp_path), "-c", str(main), "-e", "stderr"]
        nginx = subprocess.Popen([*nginx_cmd, "-g", "daemon off;"])
        procs.append(nginx)
        proxy = f"http://127.0.0.1:{listen}"
        async with aiohttp.ClientSession() as http:
            for inst in (a, b):
                await wait_ready(http, inst.url, inst.proc, tmp_path / f"{inst.name}.log")
            await wait_ready(http, proxy, nginx, tmp_path / "error.log")
            yield Cluster(proxy, {"a": a, "b": b}, tmp_path / "access.log", http)


async def offer_sdp() -> str:
    """A real offer (one video and one audio transceiver) from a throwaway peer."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video")
    pc.addTransceiver("audio")
    with aiortc_compat.ice_hosts(("127.0.0.1",)):
        await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


def owner(session_id: str | None) -> str:
    assert session_id is not None and "-" in session_id, f"no instance prefix: {session_id!r}"
    return session_id.split("-", 1)[0]


async def test_nginx_spreads_offers_retries_full_instances_and_routes_sessions_home(
    cluster: Cluster,
) -> None:
    proxy, http = cluster.proxy, cluster.http
    probes = [Probe(proxy, size=256, fps=10.0) for _ in range(4)]
    try:
        # Two offers land on both instances (round robin).
        await probes[0].connect()
        await probes[1].connect()
        first = {owner(p.session_id) for p in probes[:2]}
        assert first == {"a", "b"}, f"both offers went to {first}"

        # a (cap 1) is full: the next offers still succeed. Round robin (which the
        # probes' GET /ice-servers move on too) sends some to a first; nginx gets its
        # 503 and goes on to b.
        await probes[2].connect()
        await probes[3].connect()
        assert [owner(p.session_id) for p in probes[2:]] == ["b", "b"]
        assert (await cluster.sessions_on("a"), await cluster.sessions_on("b")) == (1, 3)
        log = cluster.access_log.read_text()
        a_addr = f"127.0.0.1:{cluster.instances['a'].port}"
        b_addr = f"127.0.0.1:{cluster.instances['b'].port}"
        offers = [line for line in log.splitlines() if line.startswith("POST /offer ")]
        assert len(offers) == 4 and all(line.startswith("POST /offer 200 ") for line in offers)
        answered_by_a = [line for line in offers if line.endswith(f"[{a_addr}] [200]")]
        retried = f"POST /offer 200 [{a_addr}, {b_addr}] [503, 200]"
        assert len(answered_by_a) == 1, log  # its one session
        tried_a = [line for line in offers if f"[{a_addr}" in line]
        assert tried_a and all(line in (answered_by_a[0], retried) for line in tried_a), log
        assert log.count(retried) == len(tried_a) - 1 >= 1, log

        # Both full: the client gets the instances' 503, its JSON and Retry-After.
        async with http.post(
            f"{proxy}/offer", json={"sdp": await offer_sdp(), "type": "offer"}
        ) as resp:
            body = await resp.json()
            assert resp.status == 503, body
            assert resp.headers.get("Retry-After") == "5"
            assert body["kind"] == "ServerFull"

        # A session's later requests reach its owner, whichever instance the pool
        # would pick: GET, PATCH, a per-session portrait.
        portrait = (MEDIA / "s0.jpg").read_bytes()
        for probe in probes:
            sid = probe.session_id
            home = owner(sid)
            other = "b" if home == "a" else "a"
            assert await cluster.holds(home, str(sid)) and not await cluster.holds(other, str(sid))
            for _ in range(2):  # twice: round robin alone would hit the wrong one once
                async with http.get(f"{proxy}/sessions/{sid}") as resp:
                    assert resp.status == 200, await resp.text()
                async with http.patch(f"{proxy}/sessions/{sid}", json={"quality": "auto"}) as resp:
                    assert resp.status == 200, await resp.text()
                async with http.post(
                    f"{proxy}/reference",
                    params={"session_id": str(sid)},
                    data=portrait,
                    headers={"Content-Type": "image/jpeg"},
                ) as resp:
                    assert resp.status == 200, await resp.text()
                    assert (await resp.json())["target"] == "session"

        # An id no instance owns: 404 from whichever instance gets it.
        async with http.get(f"{proxy}/sessions/z-0123") as resp:
            assert resp.status == 404
            assert (await resp.json())["kind"] == "NoSuchSession"

        # DELETE through nginx closes it on its owner.
        home = owner(probes[0].session_id)
        before = await cluster.sessions_on(home)
        async with http.delete(f"{proxy}/sessions/{probes[0].session_id}") as resp:
            assert resp.status == 200, await resp.text()
        assert await cluster.sessions_on(home) == before - 1
        probes[0].session_id = None  # already closed

        # WHIP: a publisher's offer takes the free slot (wherever it is); its
        # resource URL leads back to the owner through nginx.
        headers = {"Content-Type": "application/sdp"}
        async with http.post(f"{proxy}/whip", data=await offer_sdp(), headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            location = resp.headers["Location"]
        whip_home = owner(location.rsplit("/", 1)[-1])
        assert location.startswith("/whip/") and whip_home == home, location
        assert await cluster.sessions_on(home) == before
        async with http.delete(f"{proxy}{location}") as resp:
            assert resp.status == 200, await resp.text()
        assert await cluster.sessions_on(home) == before - 1

        # The page and /health go through; /metrics (session-id labels) does not.
        async with http.get(f"{proxy}/health") as resp:
            assert resp.status == 200
        async with http.get(f"{proxy}/metrics") as resp:
            assert resp.status == 404
    finally:
        await asyncio.gather(*(p.close() for p in probes), return_exceptions=True)
