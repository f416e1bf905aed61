"""Fixtures for the shared-state tests: a real three-member etcd cluster.

Without an etcd binary the tests skip locally and FAIL under CI=true (CI installs
etcd with scripts/install-etcd; a silent skip there would hide the whole suite).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms.sim.etcd_cluster import EtcdCluster, find_etcd


def etcd_binary() -> Path:
    binary = find_etcd()
    if binary is None or not binary.is_file():
        msg = "etcd not installed (run scripts/install-etcd, or set KMS_ETCD_BIN)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return binary


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh three-member cluster on 127.0.0.1 free ports, stopped after the test."""
    cluster = EtcdCluster(etcd_binary(), tmp_path / "etcd", size=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
