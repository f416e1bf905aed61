"""The etcd record: round trip and strict decoding (any doubt is a refusal)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kms.errors import SharedStateError
from kms.privval import canonical
from kms.privval.messages import BlockID
from kms.shared.record import Record, decode, encode, watermark_key
from tests.unit.state.helpers import CHAIN, PRECOMMIT, PREVOTE, block, vote

A = block(0xAA)
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def record(
    *,
    step: int = 1,
    sign_bytes: bytes | None = None,
    block_id: BlockID = A,
    sealed_at: int | None = None,
) -> Record:
    sb = (
        canonical.vote_sign_bytes(CHAIN, vote(PREVOTE, 7, 1, A))
        if sign_bytes is None
        else sign_bytes
    )
    return Record(
        height=7, round=1, step=step, block_id=block_id, sign_bytes=sb, host="kms-a",
        write_id="0f" * 16, written_at=WHEN, sealed_at=sealed_at,
    )  # fmt: skip


def test_round_trip() -> None:
    for r in (record(), record(sealed_at=9), record(sign_bytes=b"", block_id=block(0, total=0))):
        assert decode(encode(r)) == r


def test_key_layout() -> None:
    assert watermark_key("/kms/prod/", "c-1") == b"/kms/prod/chains/c-1/watermark"


def _mutated(**changes: object) -> bytes:
    obj = json.loads(encode(record()))
    for k, v in changes.items():
        if v is KeyError:
            del obj[k]
        else:
            obj[k] = v
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"v": 2}, "version"),
        ({"v": True}, "version"),
        ({"extra": 1}, "unexpected"),
        ({"host": KeyError}, "missing"),
        ({"height": 7}, "decimal string"),
        ({"height": "-7"}, "decimal string"),
        ({"round": "99999999999"}, "out of range"),
        ({"step": 3}, "step"),
        ({"step": True}, "step"),
        ({"write_id": "xyz"}, "write_id"),
        ({"sign_bytes": "zz"}, "hex"),
        ({"written_at": "yesterday"}, "written_at"),
        ({"block_id": {"hash": "AB"}}, "block_id"),
        ({"height": "8"}, "record says 8/1"),  # sign bytes for 7/1
        ({"step": 2}, "step 2"),  # prevote bytes under a precommit record
    ],
)
def test_strict_decode_refuses(changes: dict[str, object], why: str) -> None:
    with pytest.raises(SharedStateError, match=why):
        decode(_mutated(**changes))


def test_garbage_refused() -> None:
    for data in (b"", b"\xff", b"[]", b"{", b"x" * 20000):
        with pytest.raises(SharedStateError, match="does not decode"):
            decode(data)


def test_precommit_record_accepts_precommit_bytes() -> None:
    sb = canonical.vote_sign_bytes(CHAIN, vote(PRECOMMIT, 7, 1, A))
    r = record(step=2, sign_bytes=sb)
    assert decode(encode(r)) == r
