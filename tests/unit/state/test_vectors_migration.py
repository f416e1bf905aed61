"""Migration with real bytes: CometBFT state files holding the conformance-vector sign bytes.

A validator moving from CometBFT's FilePV keeps its last sign bytes and signature.
After `kms state import`, the same request must get exactly that signature back
(so the node's retry is answered without a second signature), a new vote timestamp
must get the stored timestamp, and another block must be refused.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from kms.privval.messages import (
    GO_ZERO_TIME_SECONDS,
    BlockID,
    PartSetHeader,
    Proposal,
    Timestamp,
    Vote,
)
from kms.state.format1 import decode_foreign_state
from kms.state.machine import Action, SignCandidate, decide

MIGRATABLE = (
    "derived-vote-precommit-full",
    "derived-vote-prevote-nil",
    "derived-vote-nanos",
    "derived-proposal-polround0",
    "derived-proposal-polround-minus1",
)


def _load(vectors_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors_dir / "privval_signbytes_vectors.json").read_text())
    return data


def _block_id(obj: Any) -> BlockID:
    if obj is None:
        return BlockID()
    psh = obj["part_set_header"]
    return BlockID(
        bytes.fromhex(obj["hash"]), PartSetHeader(psh["total"], bytes.fromhex(psh["hash"]))
    )


def _timestamp(obj: Any) -> Timestamp:
    if obj.get("go_zero_time"):
        return Timestamp(GO_ZERO_TIME_SECONDS, 0)
    return Timestamp(obj["seconds"], obj["nanos"])


def _message(v: dict[str, Any]) -> Vote | Proposal:
    if "vote" in v:
        x = v["vote"]
        return Vote(
            x["type"], x["height"], x["round"], _block_id(x["block_id"]), _timestamp(x["timestamp"])
        )
    x = v["proposal"]
    return Proposal(
        x["type"],
        x["height"],
        x["round"],
        x["pol_round"],
        _block_id(x["block_id"]),
        _timestamp(x["timestamp"]),
    )


def _candidate(chain_id: str, msg: Vote | Proposal) -> SignCandidate:
    if isinstance(msg, Vote):
        return SignCandidate.for_vote(chain_id, msg)
    return SignCandidate.for_proposal(chain_id, msg)


@pytest.mark.parametrize("vector_id", MIGRATABLE)
def test_imported_cometbft_state_answers_the_same_request_with_its_signature(
    vectors_dir: Path, vector_id: str
) -> None:
    data = _load(vectors_dir)
    v = next(x for x in data["derived_vectors"] if x["id"] == vector_id)
    sign_bytes = bytes.fromhex(v["expected_hex"])
    signature = bytes.fromhex(v["ed25519_signature_with_fixture_key_hex"])
    SigningKey(bytes.fromhex(data["ed25519_fixture_private_seed_hex"])).verify_key.verify(
        sign_bytes, signature
    )
    msg = _message(v)
    cometbft_step = {1: 2, 2: 3}[msg.type] if isinstance(msg, Vote) else 1
    file = {
        "height": str(msg.height),
        "round": msg.round,
        "step": cometbft_step,
        "signature": base64.b64encode(signature).decode(),
        "signbytes": sign_bytes.hex().upper(),
    }
    state, kind = decode_foreign_state(json.dumps(file).encode())
    assert kind == "cometbft" and state.block_id == msg.block_id

    same = decide(state, _candidate(v["chain_id"], msg), max_height=None)
    assert (same.action, same.signature, same.sign_bytes) == (Action.REUSE, signature, sign_bytes)

    later = replace(msg, timestamp=Timestamp(msg.timestamp.seconds + 5, 0))
    d = decide(state, _candidate(v["chain_id"], later), max_height=None)
    if isinstance(msg, Vote):
        assert (d.action, d.signature, d.timestamp) == (Action.REUSE, signature, msg.timestamp)
    else:
        assert d.action is Action.SIGN  # proposals: same block, new timestamp -> fresh signature

    other = BlockID(b"\x01" * 32, PartSetHeader(1, b"\x02" * 32))
    conflict = decide(
        state, _candidate(v["chain_id"], replace(msg, block_id=other)), max_height=None
    )
    assert (conflict.action, conflict.error_code) == (Action.REFUSE, 2)
