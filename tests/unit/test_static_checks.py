"""The code base stays lint-clean (ruff) and type-clean (mypy --strict)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import REPO_ROOT


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(
    shutil.which("ruff") is None, reason="ruff not installed (pip install -e '.[dev]')"
)
def test_ruff_reports_nothing() -> None:
    r = _run("ruff", "check", "kms", "tests", "bench", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(
    shutil.which("ruff") is None, reason="ruff not installed (pip install -e '.[dev]')"
)
def test_code_is_ruff_formatted() -> None:
    r = _run("ruff", "format", "--check", "kms", "tests", "bench")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_reports_nothing() -> None:
    r = _run(sys.executable, "-m", "mypy")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_covers_the_tests_and_the_benchmarks() -> None:
    # `python3 -m mypy` (above) checks what pyproject lists; tests and bench are code too.
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert {"kms", "tests", "bench"} <= set(config["packages"])
