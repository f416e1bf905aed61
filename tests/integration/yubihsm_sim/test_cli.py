"""`kms hsm-sim` as a separate process: notice, listening line, real library, clean exit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from yubihsm.backends.http import HttpBackend
from yubihsm.core import YubiHsm
from yubihsm.defs import COMMAND

from tests.conftest import REPO_ROOT


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kms", "hsm-sim", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on "):
            return line.split("listening on ", 1)[1].strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"no listening line; stderr: {err}")


@pytest.fixture
def proc_factory() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_runs_until_signalled_and_exits_zero(
    proc_factory: list[subprocess.Popen[str]], sig: signal.Signals
) -> None:
    proc = _start("--port", "0", "--latency-ms", "0")
    proc_factory.append(proc)
    url = _url(proc)
    assert url.startswith("http://127.0.0.1:")
    hsm = YubiHsm(HttpBackend(url, timeout=(1, 3)))
    session = hsm.create_session_derived(1, "password")
    assert session.send_secure_cmd(COMMAND.ECHO, b"cli") == b"cli"
    hsm.close()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "SIMULATED" in err and "UNPROTECTED" in err


def test_state_option_persists_keys_across_runs(
    tmp_path: Path, proc_factory: list[subprocess.Popen[str]]
) -> None:
    state = tmp_path / "sim.json"
    proc = _start("--port", "0", "--state", str(state))
    proc_factory.append(proc)
    _url(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and str(state) in err
    assert json.loads(state.read_text())["format"] == 1


def test_an_unusable_state_file_is_one_clear_error(
    tmp_path: Path, proc_factory: list[subprocess.Popen[str]]
) -> None:
    state = tmp_path / "sim.json"
    state.write_text("garbage")
    proc = _start("--port", "0", "--state", str(state))
    proc_factory.append(proc)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "kms hsm-sim:" in err and "not JSON" in err
