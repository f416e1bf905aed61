"""Hypothesis strategies for privval dataclasses (any in-range values, per dialect)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from kms.privval.messages import (
    BlockID,
    Dialect,
    PartSetHeader,
    PingRequest,
    PingResponse,
    Proposal,
    PubKeyRequest,
    PubKeyResponse,
    RemoteSignerError,
    SignBytesRequest,
    SignBytesResponse,
    SignedProposalResponse,
    SignedRawBytesResponse,
    SignedVoteResponse,
    SignProposalRequest,
    SignRawBytesRequest,
    SignVoteRequest,
    Timestamp,
    Vote,
)

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
UINT32 = st.integers(min_value=0, max_value=2**32 - 1)
TEXT = st.text(max_size=40)
SMALL_BYTES = st.binary(max_size=80)
HASH = st.one_of(st.just(b""), st.binary(min_size=32, max_size=32), SMALL_BYTES)

timestamps = st.builds(Timestamp, seconds=INT64, nanos=INT32)
part_set_headers = st.builds(PartSetHeader, total=UINT32, hash=HASH)
block_ids = st.one_of(
    st.just(BlockID()), st.builds(BlockID, hash=HASH, part_set_header=part_set_headers)
)
errors = st.one_of(st.none(), st.builds(RemoteSignerError, code=INT32, description=TEXT))


def votes(dialect: Dialect) -> st.SearchStrategy[Vote]:
    ext = SMALL_BYTES if dialect.has_vote_extensions else st.just(b"")
    return st.builds(
        Vote,
        type=st.one_of(st.sampled_from([0, 1, 2, 32]), INT32),
        height=INT64,
        round=INT32,
        block_id=block_ids,
        timestamp=timestamps,
        validator_address=SMALL_BYTES,
        validator_index=INT32,
        signature=SMALL_BYTES,
        extension=ext,
        extension_signature=ext,
    )


proposals = st.builds(
    Proposal,
    type=st.one_of(st.just(32), INT32),
    height=INT64,
    round=INT32,
    pol_round=INT32,
    block_id=block_ids,
    timestamp=timestamps,
    signature=SMALL_BYTES,
)


def requests(dialect: Dialect) -> st.SearchStrategy[Any]:
    v1 = dialect is Dialect.V1
    options: list[st.SearchStrategy[Any]] = [
        st.builds(PubKeyRequest, chain_id=TEXT),
        st.builds(
            SignVoteRequest,
            vote=st.one_of(st.none(), votes(dialect)),
            chain_id=TEXT,
            skip_extension_signing=st.booleans() if v1 else st.just(False),
        ),
        st.builds(SignProposalRequest, proposal=st.one_of(st.none(), proposals), chain_id=TEXT),
        st.just(PingRequest()),
    ]
    if v1:
        options.append(st.builds(SignBytesRequest, value=SMALL_BYTES))
    else:
        options.append(
            st.builds(SignRawBytesRequest, chain_id=TEXT, raw_bytes=SMALL_BYTES, unique_id=TEXT)
        )
    return st.one_of(options)


def responses(dialect: Dialect) -> st.SearchStrategy[Any]:
    v1 = dialect is Dialect.V1
    key_types = st.sampled_from(["ed25519", "secp256k1"]) | (
        TEXT.filter(bool) if v1 else st.nothing()
    )
    options: list[st.SearchStrategy[Any]] = [
        st.builds(PubKeyResponse, pub_key=SMALL_BYTES, error=errors, key_type=key_types),
        st.builds(SignedVoteResponse, vote=st.one_of(st.none(), votes(dialect)), error=errors),
        st.builds(SignedProposalResponse, proposal=st.one_of(st.none(), proposals), error=errors),
        st.just(PingResponse()),
    ]
    if v1:
        options.append(st.builds(SignBytesResponse, signature=SMALL_BYTES, error=errors))
    else:
        options.append(st.builds(SignedRawBytesResponse, signature=SMALL_BYTES, error=errors))
    return st.one_of(options)
