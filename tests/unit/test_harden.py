"""No core dump of a kms process can contain key material (issue 11, item 6).

Regression: `gcore` of a running softsign daemon contained the consensus key.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon.harness import make_home, running_kms

_PROBE = """
from kms.harden import disable_core_dumps, is_dumpable, _prctl, PR_GET_DUMPABLE
assert is_dumpable()
disable_core_dumps()
print(_prctl(PR_GET_DUMPABLE, 0), int(is_dumpable()))
print(open("/proc/self/limits").read())
"""


def _core_limit(limits: str) -> list[str]:
    (line,) = [ln for ln in limits.splitlines() if ln.startswith("Max core file size")]
    return line.split()[4:6]


def test_disable_core_dumps_clears_dumpable_and_the_core_limit() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    first, limits = out.split("\n", 1)
    assert first == "0 0"  # PR_GET_DUMPABLE reads back 0
    assert _core_limit(limits) == ["0", "0"]  # soft and hard


@pytest.fixture
def core_dumps_allowed() -> Iterator[None]:
    """Start children with core dumps allowed, so that only kms itself can turn them off."""
    before = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (before[1], before[1]))
    yield
    resource.setrlimit(resource.RLIMIT_CORE, before)


@pytest.mark.usefixtures("core_dumps_allowed")
def test_a_running_kms_start_has_no_core_limit(tmp_path: Path) -> None:
    home = make_home(tmp_path, ["chain-a"])
    config = home.write_config(
        home.chain_section("chain-a")
        # nothing listens there: kms keeps redialing, which is all this test needs
        + home.validator_section("chain-a", "tcp://127.0.0.1:9", home.identity, "v0.38")
        + home.softsign_section(["chain-a"])
    )
    with running_kms(config) as kms:
        deadline = time.monotonic() + 30
        # dumpable is checked in-process above; /proc/PID/status has no field for it
        while _core_limit(Path(f"/proc/{kms.pid}/limits").read_text()) != ["0", "0"]:
            assert kms.alive(), kms.log()
            assert time.monotonic() < deadline, "kms start never set RLIMIT_CORE to 0"
            time.sleep(0.1)
