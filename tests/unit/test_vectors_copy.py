"""tests/vectors/ is the project's own copy of the shared conformance vectors: it must not drift.

A plain clone has no ../shared/vectors, so the tests read tests/vectors; when the shared
folder exists (the project's workspace), every file there must be here, byte for byte.
"""

from __future__ import annotations

import pytest

from tests.conftest import REPO_ROOT, SHARED_VECTORS_DIR

OWN = REPO_ROOT / "tests" / "vectors"


def test_own_copy_holds_the_vectors_and_their_readme() -> None:
    names = {p.name for p in OWN.iterdir()}
    assert {
        "README.md",
        "privval_signbytes_vectors.json",
        "secret_connection_vectors.json",
        "merlin_vectors.json",
        "TestDeriveSecretsAndChallengeGolden.golden",
    } <= names


def test_own_copy_equals_the_shared_vectors() -> None:
    if not SHARED_VECTORS_DIR.is_dir():
        pytest.skip(f"{SHARED_VECTORS_DIR} does not exist (a plain clone): nothing to compare")
    shared = {p.name: p.read_bytes() for p in SHARED_VECTORS_DIR.iterdir() if p.is_file()}
    own = {p.name: p.read_bytes() for p in OWN.iterdir() if p.is_file()}
    assert sorted(shared) == sorted(own)
    for name, data in shared.items():
        assert own[name] == data, f"tests/vectors/{name} differs from {SHARED_VECTORS_DIR / name}"
