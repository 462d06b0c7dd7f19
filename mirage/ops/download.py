"""Check and fetch weight files: size + sha256 verification, resumable HTTPS download.

A download goes to ``<file>.part``; an interrupted one resumes with an HTTP ``Range``
request; the bytes are checked (size, then sha256) before an atomic rename, so a file
under its real name is always a verified one (or one with no reference hash, said so).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from mirage.ops.catalog import DEFAULT_BASE_URL, WeightFile, human_size

Status = Literal["ok", "unverified", "missing", "corrupt"]
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be fetched, or its bytes did not match the catalog."""


class _Interrupted(OSError):
    """The body ended early: worth another attempt, which resumes."""


#: Failures that another (resuming) attempt may get past.
_TRANSIENT = (OSError, urllib.error.URLError, http.client.HTTPException)


@dataclass(frozen=True)
class Check:
    """The state of one catalog file in a weights folder."""

    entry: WeightFile
    path: Path
    status: Status
    detail: str

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "unverified")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def mismatch(entry: WeightFile, path: Path, checksum: bool = True) -> str | None:
    """Why ``path`` is not ``entry`` (size, then sha256), or ``None`` when it matches."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"size {size} bytes, expected {entry.size}"
    if checksum and entry.sha256 is not None:
        actual = sha256_of(path)
        if actual != entry.sha256:
            return f"sha256 {actual[:16]}…, expected {entry.sha256[:16]}…"
    return None


def check(entry: WeightFile, root: Path, checksum: bool = True) -> Check:
    """Present and matching, present without a reference, missing, or corrupt.

    ``checksum=False`` checks only sizes (fast: what ``doctor`` does by default).
    """
    path = root / entry.path
    if not path.is_file():
        if not entry.downloadable:
            where = "copy it there"
        else:
            flag = " --non-commercial" if entry.noncommercial else ""
            where = f"mirage weights download {entry.backend}{flag}"
        return Check(entry, path, "missing", f"missing ({where})")
    problem = mismatch(entry, path, checksum)
    if problem is not None:
        return Check(entry, path, "corrupt", problem)
    if entry.sha256 is None or not checksum:
        reason = "no reference sha256" if entry.sha256 is None else "size only"
        return Check(entry, path, "unverified", f"present, unknown (not verified: {reason})")
    return Check(entry, path, "ok", "present, sha256 ok")


# --- progress -------------------------------------------------------------------------


class Progress:
    """A byte counter on stderr: tqdm when installed, else a plain one-line bar."""

    def __init__(self, label: str, total: int | None, initial: int, stream: IO[str]) -> None:
        self.label, self.total, self.done, self.stream = label, total, initial, stream
        self._last = 0.0
        self._bar = None
        try:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="B",
                unit_scale=True,
                desc=label,
                file=stream,
                leave=True,
            )
        except ImportError:
            pass

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= 0.5:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {human_size(self.done)}")
        else:
            self.stream.write(f"\r{self.label} {human_size(self.done)}")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self._draw()
            self.stream.write("\n")


# --- download -------------------------------------------------------------------------

Opener = Callable[[urllib.request.Request, float], IO[bytes]]


def _open(request: urllib.request.Request, timeout: float) -> IO[bytes]:
    response: IO[bytes] = urllib.request.urlopen(request, timeout=timeout)
    return response


@dataclass
class Downloader:
    """Fetches catalog files into a weights folder (``base_url`` is the hub or a mirror)."""

    root: Path
    base_url: str = DEFAULT_BASE_URL
    token: str | None = None  # a Hugging Face token, for gated repositories
    retries: int = 3  # extra attempts after an interruption (each resumes)
    timeout_s: float = 30.0
    progress: IO[str] | None = sys.stderr  # None: silent

    def fetch(self, entry: WeightFile) -> Check:
        """Download ``entry`` unless a matching copy is already there; returns its check."""
        dest = self.root / entry.path
        if dest.is_file() and mismatch(entry, dest) is None:
            return check(entry, self.root)
        if not entry.downloadable:
            raise DownloadError(f"{entry.path} is not downloadable: {entry.description}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        for attempt in range(self.retries + 1):
            try:
                self._transfer(entry, part)
                break
            except _TRANSIENT as exc:
                if attempt == self.retries:
                    kept = part.stat().st_size if part.exists() else 0
                    raise DownloadError(
                        f"{entry.path}: {exc} ({kept} bytes kept in {part.name}; run again to resume)"
                    ) from exc
                time.sleep(min(2.0**attempt, 10.0))
        problem = mismatch(entry, part)
        if problem is not None:
            part.unlink()
            raise DownloadError(
                f"{entry.path}: downloaded bytes do not match ({problem}); not installed"
            )
        os.replace(part, dest)
        return check(entry, self.root)

    def _transfer(self, entry: WeightFile, part: Path) -> None:
        have = part.stat().st_size if part.exists() else 0
        if entry.size is not None and have >= entry.size:
            if have == entry.size:
                return  # complete; the caller verifies it
            part.unlink()
            have = 0
        request = urllib.request.Request(entry.url(self.base_url))
        request.add_header("User-Agent", "mirage-weights/1")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            response = _open(request, self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left past what we have
                return
            raise DownloadError(f"HTTP {exc.code} from {request.full_url}") from exc
        with response:
            status = getattr(response, "status", 200)
            if have and status != 206:
                have = 0  # the server ignored Range: start over
            length = (
                response.headers.get("Content-Length") if hasattr(response, "headers") else None
            )
            total = have + int(length) if length is not None else entry.size
            bar = (
                Progress(entry.name, total, have, self.progress)
                if self.progress is not None
                else None
            )
            try:
                with part.open("ab" if have else "wb") as out:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        if bar is not None:
                            bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
            got = part.stat().st_size
            if total is not None and got < total:
                raise _Interrupted(f"connection closed at {got} of {total} bytes")
