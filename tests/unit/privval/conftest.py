"""Parametrize vector tests by vector id.

Ids are listed at collection time from the same directory the `vectors_dir` fixture
uses; the tests themselves load each vector through `vectors_dir`. If the directory
is missing, `test_vector_file_is_complete` fails through the fixture.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import VECTORS_DIR

from . import vectorlib


def _ids(kinds: set[str]) -> list[str]:
    if not (VECTORS_DIR / vectorlib.SIGNBYTES_FILE).is_file():
        return []
    return [v["id"] for v in vectorlib.all_vectors(VECTORS_DIR) if v["kind"] in kinds]


_PARAMS = {
    "signbytes_id": {"vote_sign_bytes", "proposal_sign_bytes", "vote_extension_sign_bytes"},
    "nolength_id": {"canonical_vote_without_length_prefix"},
    "message_id": {"privval_message"},
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, kinds in _PARAMS.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, _ids(kinds))


@pytest.fixture
def vector_by_id(vectors_dir: Any) -> Any:
    def get(vid: str) -> dict[str, Any]:
        matches = [v for v in vectorlib.all_vectors(vectors_dir) if v["id"] == vid]
        assert len(matches) == 1, vid
        return matches[0]

    return get
