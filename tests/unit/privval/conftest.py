"""Parametrize vector tests by vector id.

Ids are listed at collection time from the same directory the `vectors_dir` fixture
uses; the tests themselves load each vector through `vectors_dir`. If the directory
is missing, `test_vector_file_is_complete` fails through the fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import VECTORS_DIR

from . import vectorlib


def _ids(pred: Callable[[dict[str, Any]], bool]) -> list[str]:
    if not (VECTORS_DIR / vectorlib.SIGNBYTES_FILE).is_file():
        return []
    return [v["id"] for v in vectorlib.all_vectors(VECTORS_DIR) if pred(v)]


_SIGN_BYTES_KINDS = {"vote_sign_bytes", "proposal_sign_bytes", "vote_extension_sign_bytes"}
_PARAMS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "signbytes_id": lambda v: v["kind"] in _SIGN_BYTES_KINDS,
    "signed_id": lambda v: "ed25519_signature_with_fixture_key_hex" in v,
    "parse_id": lambda v: v["kind"] in {"vote_sign_bytes", "proposal_sign_bytes"},
    "nolength_id": lambda v: v["kind"] == "canonical_vote_without_length_prefix",
    "message_id": lambda v: (
        v["kind"] == "privval_message" and vectorlib.vector_set(v) in vectorlib.SET_DIALECTS
    ),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, pred in _PARAMS.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, _ids(pred))


@pytest.fixture
def vector_by_id(vectors_dir: Any) -> Any:
    def get(vid: str) -> dict[str, Any]:
        matches = [v for v in vectorlib.all_vectors(vectors_dir) if v["id"] == vid]
        assert len(matches) == 1, vid
        return matches[0]

    return get
