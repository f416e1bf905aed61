"""Shared fixtures. Conformance vectors live in tests/vectors/ (a copy of ../shared/vectors, kept
equal by tests/unit/test_vectors_copy.py); $KMS_VECTORS_DIR points the tests elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VECTORS_DIR = Path(os.environ.get("KMS_VECTORS_DIR", REPO_ROOT / "tests" / "vectors"))
SHARED_VECTORS_DIR = REPO_ROOT.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not VECTORS_DIR.is_dir():
        pytest.fail(f"conformance vectors not found at {VECTORS_DIR} (expected tests/vectors)")
    return VECTORS_DIR
