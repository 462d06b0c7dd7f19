"""``mirage weights``: the catalog, verification, and resumable downloads from a loopback hub.

A stdlib HTTP server in a thread stands in for the Hugging Face hub: it serves bytes made
in the test under the hub's ``/<repo>/resolve/main/<file>`` layout, honours ``Range``, and
can cut a response short or serve corrupt bytes. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mirage.cli import weights as cli
from mirage.ops import catalog
from mirage.ops.catalog import CATALOG, WeightFile, select
from mirage.ops.download import Downloader, DownloadError, check


class Hub:
    """Test double of the hub: files, corruption, and one-shot truncation per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.corrupt: set[str] = set()
        self.cut_after: dict[str, int] = {}  # path → bytes sent before the first response dies
        self.ranges: list[str | None] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, entry: WeightFile, data: bytes) -> None:
        self.files[f"/{entry.repo}/resolve/main/{entry.remote}"] = data

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                data = hub.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                if self.path in hub.corrupt:
                    data = bytes(b ^ 0xFF for b in data)
                rng = self.headers.get("Range")
                hub.ranges.append(rng)
                start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
                if start >= len(data):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = hub.cut_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler

    def __enter__(self) -> Hub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub() as h:
        yield h


def fake(entry: WeightFile, data: bytes) -> WeightFile:
    """The catalog entry with the size and hash of test bytes (same paths and source)."""
    return dataclasses.replace(entry, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def entry(name: str) -> WeightFile:
    return select([name])[0]


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: more than one read chunk would be nice, but small


# --- the catalog ---------------------------------------------------------------------


def test_catalog_paths_match_what_the_loaders_open() -> None:
    from mirage.models.avatar.liveportrait.loader import CHECKPOINT_FILES
    from mirage.models.face.landmark203 import LANDMARK_FILE
    from mirage.models.face.scrfd import SCRFD_CANDIDATES
    from mirage.models.voice.rvc.checkpoint import INDEX_FILE, MODEL_FILE, RMVPE_FILE
    from mirage.models.voice.rvc.converter import HUBERT_FILE

    paths = {w.path for w in CATALOG}
    assert set(CHECKPOINT_FILES.values()) <= paths
    assert {MODEL_FILE, INDEX_FILE, RMVPE_FILE, HUBERT_FILE} <= paths
    assert SCRFD_CANDIDATES[0] in paths
    assert LANDMARK_FILE in paths
    lp_required = {w.path for w in CATALOG if w.backend == "liveportrait" and w.required}
    assert lp_required == set(CHECKPOINT_FILES.values())


def test_catalog_entries_are_well_formed() -> None:
    for w in CATALOG:
        assert w.sha256 is None or (len(w.sha256) == 64 and int(w.sha256, 16) >= 0), w.path
        assert w.size is None or w.size > 0
        assert w.licence
    det = entry("det_10g.onnx")
    assert det.noncommercial and "non-commercial" in det.licence
    assert not entry("rvc/model.pth").downloadable  # the user's voice: never downloaded
    assert entry("hubert_base.pt").url() == (
        "https://huggingface.co/lj1995/VoiceConversionWebUI/resolve/main/hubert_base.pt"
    )
    assert [w.backend for w in select(["rvc"])] == ["rvc"] * 4
    with pytest.raises(catalog.UnknownTarget, match="unknown weight 'nope'"):
        select(["nope"])


# --- verification --------------------------------------------------------------------


def test_check_reports_missing_ok_unverified_and_corrupt(tmp_path: Path) -> None:
    e = fake(entry("hubert_base.pt"), PAYLOAD)
    assert check(e, tmp_path).status == "missing"
    path = tmp_path / e.path
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD)
    assert check(e, tmp_path).status == "ok"
    no_hash = dataclasses.replace(e, sha256=None)
    c = check(no_hash, tmp_path)
    assert (c.status, c.usable) == ("unverified", True)
    assert "unknown (not verified" in c.detail
    path.write_bytes(PAYLOAD[:-1])  # truncated
    c = check(e, tmp_path)
    assert c.status == "corrupt" and "expected" in c.detail and not c.usable
    path.write_bytes(PAYLOAD[:-1] + b"\x00")  # right size, wrong bytes
    assert check(e, tmp_path).status == "corrupt"
    assert "sha256" in check(e, tmp_path).detail
    assert check(e, tmp_path, checksum=False).status == "unverified"  # size-only check


def test_verify_command_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e = fake(entry("rmvpe.pt"), PAYLOAD)
    monkeypatch.setattr(catalog, "CATALOG", (e,))
    args = argparse.Namespace(action="verify", targets=[], models_dir=str(tmp_path), fast=False)
    out = io.StringIO()
    assert cli.run(args, out) == 0  # missing is reported, not an error
    assert "missing" in out.getvalue()
    (tmp_path / "rmvpe").mkdir()
    (tmp_path / e.path).write_bytes(b"partial")
    out = io.StringIO()
    assert cli.run(args, out) == 1
    assert "corrupt" in out.getvalue() and "1 corrupt" in out.getvalue()


# --- downloads from the loopback hub ---------------------------------------------------


def test_download_verifies_and_installs(hub: Hub, tmp_path: Path) -> None:
    e = fake(entry("hubert_base.pt"), PAYLOAD)
    hub.add(e, PAYLOAD)
    d = Downloader(tmp_path, base_url=hub.url, retries=0, progress=io.StringIO())
    result = d.fetch(e)
    assert result.status == "ok"
    assert (tmp_path / "hubert/hubert_base.pt").read_bytes() == PAYLOAD
    assert not (tmp_path / "hubert/hubert_base.pt.part").exists()
    hub.ranges.clear()
    assert d.fetch(e).status == "ok"  # already there and matching: nothing fetched
    assert hub.ranges == []


def test_interrupted_download_resumes_with_range(hub: Hub, tmp_path: Path) -> None:
    e = fake(entry("rmvpe.pt"), PAYLOAD)
    hub.add(e, PAYLOAD)
    hub.cut_after[f"/{e.repo}/resolve/main/{e.remote}"] = 300_000
    d = Downloader(tmp_path, base_url=hub.url, retries=0, progress=None)
    with pytest.raises(DownloadError, match="run again to resume"):
        d.fetch(e)
    part = tmp_path / "rmvpe/rmvpe.pt.part"
    assert part.stat().st_size == 300_000
    assert not (tmp_path / e.path).exists()  # nothing half-done under the real name
    assert d.fetch(e).status == "ok"
    assert hub.ranges == [None, "bytes=300000-"]
    assert (tmp_path / e.path).read_bytes() == PAYLOAD


def test_retry_resumes_within_one_call(hub: Hub, tmp_path: Path) -> None:
    e = fake(entry("rmvpe.pt"), PAYLOAD)
    hub.add(e, PAYLOAD)
    hub.cut_after[f"/{e.repo}/resolve/main/{e.remote}"] = 123_456
    d = Downloader(tmp_path, base_url=hub.url, retries=1, progress=io.StringIO())
    assert d.fetch(e).status == "ok"
    assert hub.ranges == [None, "bytes=123456-"]


def test_corrupt_download_is_not_installed(hub: Hub, tmp_path: Path) -> None:
    e = fake(entry("motion_extractor.pth"), PAYLOAD)
    hub.add(e, PAYLOAD)
    hub.corrupt.add(f"/{e.repo}/resolve/main/{e.remote}")
    d = Downloader(tmp_path, base_url=hub.url, retries=0, progress=None)
    with pytest.raises(DownloadError, match=r"sha256 .* not installed"):
        d.fetch(e)
    assert not (tmp_path / e.path).exists()
    assert not (tmp_path / (e.path + ".part")).exists()


def test_http_error_names_the_url(hub: Hub, tmp_path: Path) -> None:
    e = fake(entry("rmvpe.pt"), PAYLOAD)  # not added to the hub: 404
    d = Downloader(tmp_path, base_url=hub.url, retries=0, progress=None)
    with pytest.raises(DownloadError, match=r"HTTP 404 from http://127\.0\.0\.1:\d+/lj1995/"):
        d.fetch(e)


def test_download_command(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mirage weights download rvc scrfd` via MIRAGE_WEIGHTS_URL: user files and the
    non-commercial detector are skipped with a reason; the rest is fetched and verified."""
    hubert = fake(entry("hubert_base.pt"), PAYLOAD)
    rmvpe = fake(entry("rmvpe.pt"), PAYLOAD[:1000])
    det = fake(entry("det_10g.onnx"), PAYLOAD[:2000])
    user = entry("rvc/model.pth")
    for e, data in ((hubert, PAYLOAD), (rmvpe, PAYLOAD[:1000]), (det, PAYLOAD[:2000])):
        hub.add(e, data)
    monkeypatch.setattr(catalog, "CATALOG", (hubert, rmvpe, det, user))
    monkeypatch.setenv("MIRAGE_WEIGHTS_URL", hub.url)
    argv = ["weights", "download", "rvc", "scrfd", "--models-dir", str(tmp_path)]
    from mirage.cli import main

    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "pass --non-commercial" in text and "non-commercial research purposes only" in text
    assert "your RVC v1/v2 voice model" in text
    assert (tmp_path / "hubert/hubert_base.pt").is_file()
    assert not (tmp_path / det.path).exists()
    assert main([*argv, "--non-commercial"]) == 0
    assert (tmp_path / det.path).read_bytes() == PAYLOAD[:2000]
    assert main(["weights", "verify", "--models-dir", str(tmp_path)]) == 0
    verify = capsys.readouterr().out
    assert "3 ok" in verify and "1 missing" in verify


def test_list_shows_sizes_hashes_and_licences(capsys: pytest.CaptureFixture[str]) -> None:
    from mirage.cli import main

    assert main(["weights", "list", "--models-dir", "/nonexistent"]) == 0
    text = capsys.readouterr().out
    assert "spade_generator.pth" in text and "221.8 MB" in text
    assert "unknown (not verified)" in text  # no reference hash (the user's files): said plainly
    assert "non-commercial" in text
    assert "your file" in text


def test_unknown_target_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    from mirage.cli import main

    assert main(["weights", "verify", "bogus"]) == 2
    assert "unknown weight 'bogus'" in capsys.readouterr().err
