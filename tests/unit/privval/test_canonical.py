"""Canonical sign bytes: encoding rules, strict parsing, round trips, validation."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.errors import CodecError
from kms.privval import canonical
from kms.privval.canonical import (
    CanonicalProposal,
    CanonicalVote,
    decode_canonical_proposal,
    decode_canonical_vote,
    encode_canonical_proposal,
    encode_canonical_vote,
    proposal_sign_bytes,
    vote_extension_sign_bytes,
    vote_sign_bytes,
)
from kms.privval.messages import (
    NIL_BLOCK_ID,
    BlockID,
    Dialect,
    PartSetHeader,
    Proposal,
    Timestamp,
    Vote,
)
from kms.privval.validation import validate_proposal, validate_vote

from . import strategies as strat

H1 = bytes([1]) * 32
H2 = bytes([2]) * 32
BID = BlockID(hash=H1, part_set_header=PartSetHeader(total=3, hash=H2))
TS = Timestamp(seconds=1_700_000_000, nanos=5)
PRECOMMIT = Vote(
    type=2, height=10, round=1, block_id=BID, timestamp=TS, validator_address=b"a" * 20
)
PREVOTE = dataclasses.replace(PRECOMMIT, type=1)
PROPOSAL = Proposal(type=32, height=10, round=1, pol_round=-1, block_id=BID, timestamp=TS)


# --- encoding rules ---------------------------------------------------------------------


def test_vote_sign_bytes_ignore_fields_outside_the_canonical_vote() -> None:
    noisy = dataclasses.replace(
        PRECOMMIT,
        validator_address=b"z" * 20,
        validator_index=7,
        signature=b"s" * 64,
        extension=b"ext",
        extension_signature=b"e" * 64,
    )
    assert vote_sign_bytes("c", noisy) == vote_sign_bytes("c", PRECOMMIT)


def test_vote_sign_bytes_depend_on_every_canonical_field() -> None:
    base = vote_sign_bytes("c", PRECOMMIT)
    variants = [
        vote_sign_bytes("d", PRECOMMIT),
        vote_sign_bytes("c", dataclasses.replace(PRECOMMIT, type=1)),
        vote_sign_bytes("c", dataclasses.replace(PRECOMMIT, height=11)),
        vote_sign_bytes("c", dataclasses.replace(PRECOMMIT, round=2)),
        vote_sign_bytes("c", dataclasses.replace(PRECOMMIT, block_id=NIL_BLOCK_ID)),
        vote_sign_bytes("c", dataclasses.replace(PRECOMMIT, timestamp=Timestamp(1_700_000_000, 6))),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_proposal_type_is_forced_to_32() -> None:
    assert proposal_sign_bytes("c", dataclasses.replace(PROPOSAL, type=1)) == proposal_sign_bytes(
        "c", PROPOSAL
    )
    assert decode_canonical_proposal(proposal_sign_bytes("c", PROPOSAL)).type == 32


def test_round_zero_and_height_zero_are_omitted_even_though_fixed64() -> None:
    v = Vote(type=1, height=0, round=0, timestamp=Timestamp(0, 0))
    assert vote_sign_bytes("", v).hex() == "04" + "0801" + "2a00"


def test_empty_hash_with_part_set_header_is_not_nil() -> None:
    bid = BlockID(hash=b"", part_set_header=PartSetHeader(total=1, hash=H2))
    raw = vote_sign_bytes("c", dataclasses.replace(PREVOTE, block_id=bid))
    assert bytes.fromhex("2226122408011220") in raw
    assert decode_canonical_vote(raw).block_id == bid


def test_vote_extension_sign_bytes_cover_extension_height_round_chain_only() -> None:
    a = vote_extension_sign_bytes("c", dataclasses.replace(PRECOMMIT, extension=b"x"))
    b = vote_extension_sign_bytes(
        "c", dataclasses.replace(PRECOMMIT, extension=b"x", block_id=NIL_BLOCK_ID, type=1)
    )
    assert a == b
    assert a != vote_extension_sign_bytes("c", dataclasses.replace(PRECOMMIT, extension=b"y"))


def test_sign_bytes_with_out_of_range_ints_are_codec_errors() -> None:
    with pytest.raises(CodecError):
        vote_sign_bytes("c", dataclasses.replace(PRECOMMIT, height=2**63))
    with pytest.raises(CodecError):
        proposal_sign_bytes("c", dataclasses.replace(PROPOSAL, pol_round=2**63))
    with pytest.raises(CodecError):
        vote_sign_bytes("\udc80", PRECOMMIT)


def test_large_extension_length_prefix_is_multi_byte() -> None:
    ext = b"e" * (1024 * 1024)
    raw = vote_extension_sign_bytes("c", dataclasses.replace(PRECOMMIT, extension=ext))
    assert raw[3:4] == b"\x0a" and ext in raw


# --- strict parsing ---------------------------------------------------------------------

canonical_votes = st.builds(
    CanonicalVote,
    type=strat.INT32,
    height=strat.INT64,
    round=strat.INT64,
    block_id=strat.block_ids,
    timestamp=strat.timestamps,
    chain_id=strat.TEXT,
)
canonical_proposals = st.builds(
    CanonicalProposal,
    type=strat.INT32,
    height=strat.INT64,
    round=strat.INT64,
    pol_round=strat.INT64,
    block_id=strat.block_ids,
    timestamp=strat.timestamps,
    chain_id=strat.TEXT,
)


@settings(max_examples=300)
@given(canonical_votes)
def test_canonical_vote_round_trips(cv: CanonicalVote) -> None:
    raw = encode_canonical_vote(cv)
    assert decode_canonical_vote(raw) == cv
    assert encode_canonical_vote(decode_canonical_vote(raw)) == raw


@settings(max_examples=300)
@given(canonical_proposals)
def test_canonical_proposal_round_trips(cp: CanonicalProposal) -> None:
    raw = encode_canonical_proposal(cp)
    assert decode_canonical_proposal(raw) == cp
    assert encode_canonical_proposal(decode_canonical_proposal(raw)) == raw


@given(strat.votes(Dialect.V0_38), strat.TEXT)
def test_vote_sign_bytes_decode_to_the_vote(vote: Vote, chain_id: str) -> None:
    cv = decode_canonical_vote(vote_sign_bytes(chain_id, vote))
    assert cv == canonical.canonical_vote(chain_id, vote)


@given(strat.proposals, strat.TEXT)
def test_proposal_sign_bytes_decode_to_the_proposal(prop: Proposal, chain_id: str) -> None:
    cp = decode_canonical_proposal(proposal_sign_bytes(chain_id, prop))
    assert cp == canonical.canonical_proposal(chain_id, prop)


def _body(raw: bytes) -> bytes:
    return raw[1:] if raw[0] < 0x80 else raw[2:]


def _prefixed(body: bytes) -> bytes:
    from kms.privval.framing import frame

    return frame(body)


VOTE_RAW = vote_sign_bytes("c", PRECOMMIT)
PROPOSAL_RAW = proposal_sign_bytes("c", PROPOSAL)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "truncated"),
        (VOTE_RAW[:-1], "length prefix"),
        (VOTE_RAW + b"\x00", "length prefix"),
        (_prefixed(_body(VOTE_RAW) + b"\x38\x01"), "unexpected field 7"),
        (_prefixed(b"\x08\x01" + _body(VOTE_RAW)), "repeated"),
        (_prefixed(b"\x10\x01" + _body(VOTE_RAW)[2:]), "wire type"),
        (_prefixed(b"\x08\x00" + _body(VOTE_RAW)[2:]), "explicitly as zero"),
        (
            _prefixed(bytes.fromhex("0801") + bytes.fromhex("22021200") + bytes.fromhex("2a00")),
            "zero",
        ),
        (_prefixed(bytes.fromhex("0801")), "timestamp missing"),
        (_prefixed(bytes.fromhex("08012a00") + bytes.fromhex("3201ff")), "UTF-8"),
        (_prefixed(bytes.fromhex("08012a03") + bytes.fromhex("1080")), "past its container"),
        (_prefixed(bytes.fromhex("2a0b08ffffffffffffffffff02")), "64 bits"),
        (_prefixed(bytes.fromhex("2a02") + bytes.fromhex("1080")), "truncated"),
        (_prefixed(bytes.fromhex("2a06") + bytes.fromhex("10ffffffff7f")), "nanos"),
        (_prefixed(bytes.fromhex("1101")), "fixed64"),
        (_prefixed(bytes.fromhex("0001")), "field number 0"),
    ],
)
def test_malformed_canonical_votes_are_codec_errors(raw: bytes, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        decode_canonical_vote(raw)


def test_vote_bytes_are_not_a_canonical_proposal_and_vice_versa() -> None:
    with pytest.raises(CodecError):
        decode_canonical_proposal(VOTE_RAW)
    with pytest.raises(CodecError):
        decode_canonical_vote(PROPOSAL_RAW)


def test_nanos_outside_int32_are_refused() -> None:
    # nanos = 2**32 (a uint64 varint that is not a sign-extended int32)
    raw = _prefixed(bytes.fromhex("2a06") + bytes.fromhex("108080808010"))
    with pytest.raises(CodecError, match="nanos"):
        decode_canonical_vote(raw)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_into_canonical_parsers_only_raise_codec_error(data: bytes) -> None:
    for parse in (decode_canonical_vote, decode_canonical_proposal):
        with contextlib.suppress(CodecError):
            parse(data)
    for parse in (decode_canonical_vote, decode_canonical_proposal):
        with contextlib.suppress(CodecError):
            parse(_prefixed(data))


@settings(max_examples=300)
@given(canonical_votes, st.data())
def test_mutated_canonical_votes_parse_or_raise_codec_error(
    cv: CanonicalVote, data: st.DataObject
) -> None:
    raw = bytearray(encode_canonical_vote(cv))
    i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        parsed = decode_canonical_vote(bytes(raw))
    except CodecError:
        return
    # whatever parses is a well-formed vote that survives its own round trip
    assert decode_canonical_vote(encode_canonical_vote(parsed)) == parsed


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", list(Dialect), ids=lambda d: d.value)
def test_well_formed_votes_pass_validation(dialect: Dialect) -> None:
    assert validate_vote(PRECOMMIT, dialect) is None
    assert validate_vote(PREVOTE, dialect) is None
    assert validate_vote(dataclasses.replace(PREVOTE, block_id=NIL_BLOCK_ID), dialect) is None
    assert validate_vote(dataclasses.replace(PREVOTE, validator_address=b""), dialect) is None
    assert validate_vote(dataclasses.replace(PREVOTE, round=2**31 - 1), dialect) is None
    assert validate_vote(dataclasses.replace(PREVOTE, timestamp=Timestamp()), dialect) is None


@pytest.mark.parametrize("dialect", [Dialect.V0_38, Dialect.V1], ids=lambda d: d.value)
def test_extensions_are_allowed_on_non_nil_precommits(dialect: Dialect) -> None:
    vote = dataclasses.replace(PRECOMMIT, extension=b"x", extension_signature=b"s")
    assert validate_vote(vote, dialect) is None


EMPTY_HASH_BID = BlockID(hash=b"", part_set_header=PartSetHeader(total=1, hash=H2))


@pytest.mark.parametrize(
    ("vote", "dialect", "reason"),
    [
        (None, Dialect.V0_38, "without a vote"),
        (dataclasses.replace(PREVOTE, type=0), Dialect.V0_38, "type"),
        (dataclasses.replace(PREVOTE, type=32), Dialect.V0_38, "type"),
        (dataclasses.replace(PREVOTE, height=0), Dialect.V0_38, "height"),
        (dataclasses.replace(PREVOTE, height=-1), Dialect.V0_38, "height"),
        (dataclasses.replace(PREVOTE, round=-1), Dialect.V0_38, "round"),
        (dataclasses.replace(PREVOTE, round=2**31), Dialect.V0_38, "round"),
        (dataclasses.replace(PREVOTE, validator_address=b"a" * 19), Dialect.V0_38, "address"),
        (dataclasses.replace(PREVOTE, validator_index=-1), Dialect.V0_38, "index"),
        (dataclasses.replace(PREVOTE, block_id=EMPTY_HASH_BID), Dialect.V0_38, "complete"),
        (
            dataclasses.replace(PREVOTE, block_id=BlockID(H1, PartSetHeader(0, H2))),
            Dialect.V0_38,
            "complete",
        ),
        (
            dataclasses.replace(PREVOTE, block_id=BlockID(H1, PartSetHeader(1, b""))),
            Dialect.V0_38,
            "complete",
        ),
        (
            dataclasses.replace(PREVOTE, block_id=BlockID(H1[:31], PartSetHeader(1, H2))),
            Dialect.V0_38,
            "31 bytes",
        ),
        (
            dataclasses.replace(PREVOTE, block_id=BlockID(H1, PartSetHeader(1, H2 + b"x"))),
            Dialect.V0_38,
            "33 bytes",
        ),
        (dataclasses.replace(PREVOTE, extension=b"x"), Dialect.V0_38, "prevote or nil"),
        (dataclasses.replace(PREVOTE, extension_signature=b"x"), Dialect.V0_38, "prevote or nil"),
        (
            dataclasses.replace(PRECOMMIT, block_id=NIL_BLOCK_ID, extension=b"x"),
            Dialect.V1,
            "prevote or nil",
        ),
        (dataclasses.replace(PRECOMMIT, extension=b"x"), Dialect.V0_34, "v0.34"),
        (dataclasses.replace(PRECOMMIT, extension_signature=b"x"), Dialect.V0_37, "v0.37"),
        (dataclasses.replace(PREVOTE, timestamp=Timestamp(0, -1)), Dialect.V0_38, "nanos"),
        (dataclasses.replace(PREVOTE, timestamp=Timestamp(0, 10**9)), Dialect.V0_38, "nanos"),
        (
            dataclasses.replace(PREVOTE, timestamp=Timestamp(-62135596801, 0)),
            Dialect.V0_38,
            "seconds",
        ),
        (
            dataclasses.replace(PREVOTE, timestamp=Timestamp(253402300800, 0)),
            Dialect.V0_38,
            "seconds",
        ),
        # deliberately ill-typed: a value no decoder yields must still be refused
        (dataclasses.replace(PREVOTE, block_id="nope"), Dialect.V0_38, "malformed"),  # type: ignore[arg-type]
    ],
)
def test_each_vote_rule_refuses(vote: Vote | None, dialect: Dialect, reason: str) -> None:
    got = validate_vote(vote, dialect)
    assert got is not None and reason in got


def test_well_formed_proposals_pass_validation() -> None:
    assert validate_proposal(PROPOSAL) is None
    assert validate_proposal(dataclasses.replace(PROPOSAL, round=5, pol_round=4)) is None
    assert validate_proposal(dataclasses.replace(PROPOSAL, round=0, pol_round=-1)) is None


@pytest.mark.parametrize(
    ("proposal", "reason"),
    [
        (None, "without a proposal"),
        (dataclasses.replace(PROPOSAL, type=1), "type"),
        (dataclasses.replace(PROPOSAL, height=0), "height"),
        (dataclasses.replace(PROPOSAL, round=-1), "round"),
        (dataclasses.replace(PROPOSAL, round=2**31), "round"),
        (dataclasses.replace(PROPOSAL, pol_round=-2), "< -1"),
        (dataclasses.replace(PROPOSAL, pol_round=1), ">= round"),
        (dataclasses.replace(PROPOSAL, round=0, pol_round=0), ">= round"),
        (dataclasses.replace(PROPOSAL, block_id=NIL_BLOCK_ID), "not nil"),
        (dataclasses.replace(PROPOSAL, block_id=EMPTY_HASH_BID), "complete"),
        (dataclasses.replace(PROPOSAL, block_id=BlockID(H1 + b"x", PartSetHeader(1, H2))), "33"),
        (dataclasses.replace(PROPOSAL, timestamp=Timestamp(0, 10**9)), "nanos"),
        # deliberately ill-typed: a value no decoder yields must still be refused
        (dataclasses.replace(PROPOSAL, height=None), "malformed"),  # type: ignore[arg-type]
    ],
)
def test_each_proposal_rule_refuses(proposal: Proposal | None, reason: str) -> None:
    got = validate_proposal(proposal)
    assert got is not None and reason in got


@given(strat.votes(Dialect.V1), st.sampled_from(list(Dialect)))
def test_validate_vote_never_raises(vote: Vote, dialect: Dialect) -> None:
    assert validate_vote(vote, dialect) is None or isinstance(validate_vote(vote, dialect), str)


@given(strat.proposals)
def test_validate_proposal_never_raises(prop: Proposal) -> None:
    result = validate_proposal(prop)
    assert result is None or isinstance(result, str)
