"""Fixtures for the SecretConnection tests: the conformance vectors, parsed once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def sc_vectors(vectors_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors_dir / "secret_connection_vectors.json").read_text())
    return data


@pytest.fixture(scope="session")
def merlin_vectors(vectors_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors_dir / "merlin_vectors.json").read_text())
    return data


@pytest.fixture(scope="session")
def kdf_golden_rows(vectors_dir: Path) -> list[list[str]]:
    text = (vectors_dir / "TestDeriveSecretsAndChallengeGolden.golden").read_text()
    return [line.split(",") for line in text.splitlines() if line.strip()]
