"""Build `kms.privval.messages` dataclasses from the JSON conformance vectors.

Test helper only: the vectors live in tests/vectors (read via `vectors_dir`).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from kms.privval.messages import (
    NIL_BLOCK_ID,
    BlockID,
    Dialect,
    PartSetHeader,
    PingRequest,
    PingResponse,
    Proposal,
    PubKeyRequest,
    PubKeyResponse,
    RemoteSignerError,
    SignedProposalResponse,
    SignedVoteResponse,
    SignProposalRequest,
    SignVoteRequest,
    Timestamp,
    Vote,
)

SIGNBYTES_FILE = "privval_signbytes_vectors.json"

# vector set (from the id) -> dialects whose wire it describes
SET_DIALECTS: dict[str, tuple[Dialect, ...]] = {
    "v0.34.x": (Dialect.V0_34, Dialect.V0_37),  # v0.37.x is byte-identical
    "v0.38.x": (Dialect.V0_38,),
    "v1.x": (Dialect.V1,),
}
REQUEST_VARIANTS = {"ping_request", "pub_key_request", "sign_vote_request", "sign_proposal_request"}


@cache
def load(vectors_dir: Path) -> dict[str, Any]:
    with open(vectors_dir / SIGNBYTES_FILE) as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def all_vectors(vectors_dir: Path) -> list[dict[str, Any]]:
    data = load(vectors_dir)
    return [*data["vectors"], *data["derived_vectors"]]


def vector_set(vector: dict[str, Any]) -> str:
    """'cometbft-v0.38.x-privval-ping_request' -> 'v0.38.x'."""
    return str(vector["id"]).split("-")[1]


def timestamp(obj: dict[str, Any] | None) -> Timestamp:
    if obj is None or obj.get("go_zero_time"):
        return Timestamp()
    return Timestamp(seconds=obj["seconds"], nanos=obj["nanos"])


def block_id(obj: dict[str, Any] | None) -> BlockID:
    if obj is None:
        return NIL_BLOCK_ID
    psh = obj["part_set_header"]
    return BlockID(
        hash=bytes.fromhex(obj["hash"]),
        part_set_header=PartSetHeader(total=psh["total"], hash=bytes.fromhex(psh["hash"])),
    )


def vote(obj: dict[str, Any]) -> Vote:
    return Vote(
        type=obj.get("type", 0),
        height=obj.get("height", 0),
        round=obj.get("round", 0),
        block_id=block_id(obj.get("block_id")),
        timestamp=timestamp(obj.get("timestamp")),
        validator_address=bytes.fromhex(obj.get("validator_address", "")),
        validator_index=obj.get("validator_index", 0),
        signature=bytes.fromhex(obj.get("signature", "")),
        extension=bytes.fromhex(obj.get("extension", "")),
        extension_signature=bytes.fromhex(obj.get("extension_signature", "")),
    )


def proposal(obj: dict[str, Any]) -> Proposal:
    return Proposal(
        type=obj.get("type", 0),
        height=obj.get("height", 0),
        round=obj.get("round", 0),
        pol_round=obj.get("pol_round", 0),
        block_id=block_id(obj.get("block_id")),
        timestamp=timestamp(obj.get("timestamp")),
        signature=bytes.fromhex(obj.get("signature", "")),
    )


def _error(fields: dict[str, Any]) -> RemoteSignerError | None:
    err = fields.get("error")
    return None if err is None else RemoteSignerError(err["code"], err["description"])


def privval_message(vector: dict[str, Any]) -> Any:
    """The dataclass a `privval_message` vector describes (as decoding should yield it)."""
    f = vector["fields"]
    variant = vector["message_variant"]
    if variant == "ping_request":
        return PingRequest()
    if variant == "ping_response":
        return PingResponse()
    if variant == "pub_key_request":
        return PubKeyRequest(chain_id=f.get("chain_id", ""))
    if variant == "pub_key_response":
        if "pub_key_bytes" in f:
            return PubKeyResponse(
                pub_key=bytes.fromhex(f["pub_key_bytes"]),
                error=_error(f),
                key_type=f["pub_key_type"],
            )
        pk = f.get("pub_key")
        if pk is None:
            return PubKeyResponse(pub_key=b"", error=_error(f), key_type="")
        return PubKeyResponse(
            pub_key=bytes.fromhex(pk["bytes"]), error=_error(f), key_type=pk["type"]
        )
    if variant == "sign_vote_request":
        return SignVoteRequest(vote=vote(f["vote"]), chain_id=f.get("chain_id", ""))
    if variant == "signed_vote_response":
        return SignedVoteResponse(vote=vote(f["vote"]), error=_error(f))
    if variant == "sign_proposal_request":
        return SignProposalRequest(proposal=proposal(f["proposal"]), chain_id=f.get("chain_id", ""))
    if variant == "signed_proposal_response":
        return SignedProposalResponse(proposal=proposal(f["proposal"]), error=_error(f))
    raise AssertionError(f"unknown variant {variant}")
