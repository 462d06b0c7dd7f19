"""In CI a skip is a failure unless the CI machine lacks the thing by design.

``pytest.importorskip`` and ``skipif(tool missing)`` keep a developer's partial install
usable, but in CI (``CI=true``: .ci/run sets it, hosted runners do too) a package that
``.[torch,test]`` installs, or a tool .ci/run installs, must be there: a broken install
would otherwise turn whole modules into quiet skips and the run would still pass. The
only skips CI accepts are listed in ``ALLOWED``: no GPU, no downloaded weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pytest

#: Why a CI machine may skip a test: it has no CUDA device and downloads no weights.
#: (A test marked ``gpu`` may also skip, whatever its reason says.)
ALLOWED: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("no GPU", re.compile(r"\b(CUDA|GPU)\b")),
    ("no weights", re.compile(r"\.onnx (not present|not in the weights folder)")),
)


def in_ci(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("CI", "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Skip:
    nodeid: str
    reason: str
    gpu_marked: bool = False


def unexpected(skips: Iterable[Skip]) -> list[Skip]:
    """The skips a CI run must not have."""
    return [
        s for s in skips if not s.gpu_marked and not any(p.search(s.reason) for _, p in ALLOWED)
    ]


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@dataclass(eq=False)  # pluggy keeps plugins in sets: hashed by identity
class SkipAudit:
    """Collects every skip of one session; in CI, fails the session on one not allowed."""

    strict: bool
    skips: list[Skip] = field(default_factory=list)
    gpu_marked: set[str] = field(default_factory=set)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:  # a module-level importorskip / skipif
            self.skips.append(Skip(report.nodeid, _reason(report)))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.gpu_marked = {i.nodeid for i in session.items if i.get_closest_marker("gpu")}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            gpu = report.nodeid in self.gpu_marked
            self.skips.append(Skip(report.nodeid, _reason(report), gpu))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.strict and unexpected(self.skips) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        bad = unexpected(self.skips)
        if not (self.strict and bad):
            return
        allowed = ", ".join(name for name, _ in ALLOWED)
        terminalreporter.section("skips CI does not allow", red=True)
        terminalreporter.line(f"CI=true: only these reasons may skip: {allowed}, or a gpu mark")
        for skip in bad:
            terminalreporter.line(f"SKIPPED IN CI {skip.nodeid}: {skip.reason}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipAudit(strict=in_ci()), "mirage-ci-skips")
