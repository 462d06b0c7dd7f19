"""Session churn leaves nothing behind: ``tests/churn_session.py``, in a fresh process.

Its RSS bound tells a leaked session's native memory (0.41 MB a cycle) from a clean
server (-0.01-0.12 alone), but inside the suite's process a clean CI run read 0.28
(2026-12-02), near the 0.25 bound: what earlier tests left in the heap is no server's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

CHURN = Path(__file__).with_name("churn_session.py")
ROOT = CHURN.parent.parent


@pytest.mark.slow
def test_churn_leaves_no_sessions_tasks_threads_or_fds() -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(CHURN)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    print(done.stdout[-2000:])
    assert re.search(r"^1 passed", done.stdout, re.M), done.stdout[-8000:] + done.stderr[-2000:]
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
