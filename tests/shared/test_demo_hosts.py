"""`kms demo --hosts 2` runs end to end: take-over and the cross-host refusal are shown."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.shared.conftest import etcd_binary


def test_demo_with_two_hosts() -> None:
    env = {**os.environ, "KMS_ETCD_BIN": str(etcd_binary())}
    r = subprocess.run(
        [sys.executable, "-m", "kms", "demo", "--hosts", "2", "--heights", "4"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "standby for node" in r.stdout
    assert "kms-b took over in" in r.stdout and "(code 2: shared watermark (kms-a)" in r.stdout
    assert "etcd record written by kms-b" in r.stdout
    assert "Traceback" not in r.stderr
