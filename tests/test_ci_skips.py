"""CI turns a skip it does not expect into a failure (tests/ci_skips.py)."""

from __future__ import annotations

import pytest

from tests.ci_skips import Skip, in_ci, unexpected

SKIPPING = """
import pytest

def test_runs():
    pass

@pytest.mark.gpu
def test_gpu_marked():
    pytest.skip("whatever the reason")

@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_no_cuda():
    pass

@pytest.mark.skipif(True, reason="det_10g.onnx not in the weights folder")
def test_no_weights():
    pass
"""
BROKEN_INSTALL = """
import pytest

nothing = pytest.importorskip("mirage_no_such_package")

def test_never_collected():
    pass
"""


def test_in_ci_reads_the_ci_variable() -> None:
    assert in_ci({"CI": "true"}) and in_ci({"CI": "1"}) and in_ci({"CI": " True "})
    assert not in_ci({}) and not in_ci({"CI": ""}) and not in_ci({"CI": "false"})


def test_only_no_gpu_and_no_weights_may_skip() -> None:
    skips = [
        Skip("a", "needs a CUDA device"),
        Skip("b", "liveportrait/landmark.onnx not present"),
        Skip("c", "anything", gpu_marked=True),
        Skip("d", "could not import 'torch': No module named 'torch'"),
        Skip("e", "nginx is not installed (apt-get install nginx-light; .ci/run does)"),
    ]
    assert [s.nodeid for s in unexpected(skips)] == ["d", "e"]


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_missing_package_fails_a_ci_run_and_only_skips_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    pytester.makepyfile(test_fine=SKIPPING, test_broken=BROKEN_INSTALL)
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest("-p", "tests.ci_skips", "-rs")
    result.assert_outcomes(passed=1, skipped=4)
    if ci:
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.stdout.fnmatch_lines(
            ["*skips CI does not allow*", "SKIPPED IN CI test_broken.py: could not import*"]
        )
        assert "SKIPPED IN CI test_fine" not in result.stdout.str()
    else:
        assert result.ret == pytest.ExitCode.OK
        assert "SKIPPED IN CI" not in result.stdout.str()
    # Allowed skips alone pass in CI too.
    (pytester.path / "test_broken.py").unlink()
    assert pytester.runpytest("-p", "tests.ci_skips").ret == pytest.ExitCode.OK
