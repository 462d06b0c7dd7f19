"""``make test`` on a fresh machine: the Debian packages the tests need are installed
when root, or it stops before the first test with one line saying what to install."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "system-packages.sh"
PROGRAMS = {
    "espeak-ng": "espeak-ng",
    "chromium": "chromium",
    "iproute2": "ip",
    "util-linux": "unshare",
    "nginx-light": "nginx",
}


def fake_machine(tmp: Path, uid: int, present: set[str]) -> dict[str, str]:
    """A PATH holding only ``id`` (answering ``uid``), a recording ``apt-get`` and the
    programs of the ``present`` packages."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    scripts = {"id": f"echo {uid}", "apt-get": f'echo "$*" >> {tmp / "apt.log"}'}
    scripts |= {PROGRAMS[p]: "true" for p in present}
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": str(bin_dir), "SYSTEM_SBIN": str(tmp / "no-sbin")}


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30
    )


def test_nothing_to_do_when_every_package_is_there(tmp_path: Path) -> None:
    done = run(fake_machine(tmp_path, 1000, set(PROGRAMS)))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (tmp_path / "apt.log").exists()


def test_not_root_stops_with_one_line_naming_the_packages(tmp_path: Path) -> None:
    done = run(fake_machine(tmp_path, 1000, {"util-linux"}))
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    wanted = "espeak-ng chromium iproute2 nginx-light"
    assert lines == [
        f"the tests need the Debian packages {wanted}; "
        f"install them with: sudo apt-get install -y {wanted}"
    ]
    assert not (tmp_path / "apt.log").exists()


def test_root_installs_only_what_is_missing(tmp_path: Path) -> None:
    done = run(fake_machine(tmp_path, 0, {"espeak-ng", "iproute2", "util-linux"}))
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "apt.log").read_text().splitlines()
    assert log == ["update -qq", "install -y -qq chromium nginx-light"]


@pytest.mark.parametrize("target", ["test", "bench"])
def test_make_checks_the_packages_before_anything_runs(target: str) -> None:
    env = {**os.environ, "MAKEFLAGS": ""}
    plan = subprocess.run(
        ["make", "-n", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    ).stdout.splitlines()
    check = plan.index("sh scripts/system-packages.sh")
    assert check == 0 or "venv" not in " ".join(plan[:check]), plan
    assert any("pytest" in line or "bench/" in line for line in plan[check + 1 :]), plan
