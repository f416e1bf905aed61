"""Codec behaviour per dialect: quirks, refusals, and errors that must be CodecError."""

from __future__ import annotations

import pytest

from kms.errors import CodecError, EncodeError
from kms.privval import codec
from kms.privval.messages import (
    GO_ZERO_TIME_SECONDS,
    Dialect,
    Message,
    PingRequest,
    PingResponse,
    Proposal,
    PubKeyRequest,
    PubKeyResponse,
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

V0 = [Dialect.V0_34, Dialect.V0_37, Dialect.V0_38]
ALL = list(Dialect)
KEY = bytes(range(32))


def _ids(d: Dialect) -> str:
    return d.value


@pytest.mark.parametrize("dialect", ALL, ids=_ids)
def test_ping_matches_privval_doc_bytes(dialect: Dialect) -> None:
    assert codec.encode(PingRequest(), dialect) == bytes.fromhex("3a00")
    assert codec.encode(PingResponse(), dialect) == bytes.fromhex("4200")


def test_pubkey_request_matches_privval_doc_bytes() -> None:
    body = codec.encode(PubKeyRequest(chain_id="test_chain_id"), Dialect.V0_38)
    assert body.hex() == "0a0f0a0d746573745f636861696e5f6964"


@pytest.mark.parametrize("dialect", V0, ids=_ids)
def test_v0_pubkey_response_uses_field_1_only(dialect: Dialect) -> None:
    body = codec.encode(PubKeyResponse(pub_key=KEY), dialect)
    assert body == bytes.fromhex("12240a220a20") + KEY


def test_v1_pubkey_response_uses_fields_3_and_4_only() -> None:
    body = codec.encode(PubKeyResponse(pub_key=KEY), Dialect.V1)
    assert body == bytes.fromhex("122b1a20") + KEY + bytes.fromhex("220765643235353139")


def test_v0_pubkey_response_refuses_key_types_it_cannot_carry() -> None:
    with pytest.raises(EncodeError, match="bls12_381"):
        codec.encode(PubKeyResponse(pub_key=KEY, key_type="bls12_381"), Dialect.V0_38)
    body = codec.encode(PubKeyResponse(pub_key=KEY, key_type="bls12_381"), Dialect.V1)
    assert codec.decode_response(body, Dialect.V1) == PubKeyResponse(KEY, None, "bls12_381")


def test_secp256k1_key_goes_into_oneof_field_2_on_v0() -> None:
    key = b"\x02" + bytes(32)
    body = codec.encode(PubKeyResponse(pub_key=key, key_type="secp256k1"), Dialect.V0_34)
    assert body == bytes.fromhex("12250a23" + "1221") + key
    assert codec.decode_response(body, Dialect.V0_34) == PubKeyResponse(key, None, "secp256k1")


@pytest.mark.parametrize("dialect", ALL, ids=_ids)
def test_error_responses_always_carry_an_empty_vote_and_proposal(dialect: Dialect) -> None:
    vote_body = codec.encode(SignedVoteResponse(vote=None), dialect)
    # vote (non-nullable) with block_id {part_set_header {}} and Go zero time
    assert vote_body.hex() == "22130a11220212002a0b088092b8c398feffffff01"
    prop_body = codec.encode(SignedProposalResponse(proposal=None), dialect)
    assert prop_body.hex() == "32130a112a021200320b088092b8c398feffffff01"


@pytest.mark.parametrize("dialect", ALL, ids=_ids)
def test_sign_requests_without_object_decode_to_none(dialect: Dialect) -> None:
    body = codec.encode(SignVoteRequest(vote=None, chain_id="c"), dialect)
    assert body.hex() == "1a03120163"
    assert codec.decode_request(body, dialect) == SignVoteRequest(vote=None, chain_id="c")
    body = codec.encode(SignProposalRequest(proposal=None, chain_id="c"), dialect)
    assert codec.decode_request(body, dialect) == SignProposalRequest(proposal=None, chain_id="c")


@pytest.mark.parametrize("dialect", ALL, ids=_ids)
def test_missing_timestamp_decodes_as_go_zero_time_not_epoch(dialect: Dialect) -> None:
    # SignVoteRequest{vote: {type: 1, height: 5}} with no timestamp field at all
    body = bytes.fromhex("1a060a0408011005")
    req = codec.decode_request(body, dialect)
    assert isinstance(req, SignVoteRequest) and req.vote is not None
    assert req.vote.timestamp == Timestamp(seconds=GO_ZERO_TIME_SECONDS, nanos=0)
    # whereas an explicit empty Timestamp is the Unix epoch
    body = bytes.fromhex("1a080a06080110052a00")
    req = codec.decode_request(body, dialect)
    assert isinstance(req, SignVoteRequest) and req.vote is not None
    assert req.vote.timestamp == Timestamp(seconds=0, nanos=0)


def test_skip_extension_signing_is_v1_only() -> None:
    req = SignVoteRequest(vote=None, chain_id="c", skip_extension_signing=True)
    assert codec.decode_request(codec.encode(req, Dialect.V1), Dialect.V1) == req
    for dialect in V0:
        with pytest.raises(EncodeError, match="v1"):
            codec.encode(req, dialect)
    # on v0.x, field 3 of SignVoteRequest is unknown and ignored, like Go
    body = bytes.fromhex("1a05120163" + "1801")
    assert codec.decode_request(body, Dialect.V0_38) == SignVoteRequest(vote=None, chain_id="c")


def test_tag_9_means_sign_bytes_on_v1_and_raw_bytes_on_v0() -> None:
    v1 = codec.encode(SignBytesRequest(value=b"abc"), Dialect.V1)
    raw = codec.encode(
        SignRawBytesRequest(chain_id="abc", raw_bytes=b"", unique_id=""), Dialect.V0_38
    )
    assert v1 == raw == bytes.fromhex("4a050a03616263")  # same bytes, different meaning
    assert codec.decode_request(v1, Dialect.V1) == SignBytesRequest(value=b"abc")
    for dialect in V0:
        assert codec.decode_request(v1, dialect) == SignRawBytesRequest("abc", b"", "")


def test_tag_10_means_sign_bytes_response_on_v1_and_raw_bytes_response_on_v0() -> None:
    body = codec.encode(SignBytesResponse(signature=b"s"), Dialect.V1)
    assert body == codec.encode(SignedRawBytesResponse(signature=b"s"), Dialect.V0_34)
    assert codec.decode_response(body, Dialect.V1) == SignBytesResponse(b"s")
    assert codec.decode_response(body, Dialect.V0_34) == SignedRawBytesResponse(b"s")


@pytest.mark.parametrize(
    ("msg", "dialects"),
    [
        (SignBytesRequest(value=b"x"), V0),
        (SignBytesResponse(signature=b"x"), V0),
        (SignRawBytesRequest(chain_id="c", raw_bytes=b"x", unique_id="u"), [Dialect.V1]),
        (SignedRawBytesResponse(signature=b"x"), [Dialect.V1]),
    ],
)
def test_variants_foreign_to_a_dialect_are_refused(msg: Message, dialects: list[Dialect]) -> None:
    for dialect in dialects:
        with pytest.raises(EncodeError, match="exists only"):
            codec.encode(msg, dialect)


@pytest.mark.parametrize("dialect", [Dialect.V0_34, Dialect.V0_37], ids=_ids)
def test_v034_refuses_to_encode_extension_fields(dialect: Dialect) -> None:
    for vote in (
        Vote(type=2, height=1, round=0, extension=b"e"),
        Vote(type=2, height=1, round=0, extension_signature=b"s"),
    ):
        with pytest.raises(EncodeError, match="extension"):
            codec.encode(SignedVoteResponse(vote=vote), dialect)


@pytest.mark.parametrize("dialect", ALL, ids=_ids)
def test_responses_where_requests_are_expected_are_refused(dialect: Dialect) -> None:
    with pytest.raises(CodecError, match="ping_response where a request"):
        codec.decode_request(codec.encode(PingResponse(), dialect), dialect)
    with pytest.raises(CodecError, match="ping_request where a response"):
        codec.decode_response(codec.encode(PingRequest(), dialect), dialect)


@pytest.mark.parametrize("dialect", ALL, ids=_ids)
def test_empty_and_unknown_messages_are_refused_with_clear_text(dialect: Dialect) -> None:
    with pytest.raises(CodecError, match="empty privval message"):
        codec.decode_request(b"", dialect)
    with pytest.raises(CodecError, match="field number 11"):
        codec.decode_request(bytes.fromhex("5a00"), dialect)
    with pytest.raises(CodecError, match="malformed"):
        codec.decode_request(bytes.fromhex("1a05"), dialect)  # truncated


@pytest.mark.parametrize("dialect", ALL, ids=_ids)
def test_invalid_utf8_chain_id_is_a_codec_error(dialect: Dialect) -> None:
    with pytest.raises(CodecError):
        codec.decode_request(bytes.fromhex("0a030a01ff"), dialect)


@pytest.mark.parametrize(
    "msg",
    [
        SignedVoteResponse(vote=Vote(type=1, height=2**63, round=0)),
        SignedVoteResponse(vote=Vote(type=1, height=1, round=2**31)),
        SignedVoteResponse(vote=Vote(type=2**31, height=1, round=0)),
        SignedVoteResponse(vote=Vote(type=1, height=1, round=0, validator_index=-(2**31) - 1)),
        SignedVoteResponse(vote=Vote(type=1, height=1, round=0, timestamp=Timestamp(2**63, 0))),
        SignedVoteResponse(vote=Vote(type=1, height=1, round=0, timestamp=Timestamp(0, 2**31))),
        SignedProposalResponse(proposal=Proposal(type=32, height=1, round=1, pol_round=2**31)),
        SignedProposalResponse(
            proposal=Proposal(type=32, height=-(2**63) - 1, round=1, pol_round=0)
        ),
    ],
)
@pytest.mark.parametrize("dialect", ALL, ids=_ids)
def test_out_of_range_integers_are_encode_errors(msg: Message, dialect: Dialect) -> None:
    with pytest.raises(EncodeError, match="out of range"):
        codec.encode(msg, dialect)


def test_part_set_total_is_uint32() -> None:
    from kms.privval.messages import BlockID, PartSetHeader

    bad = Vote(type=1, height=1, round=0, block_id=BlockID(b"", PartSetHeader(total=-1)))
    with pytest.raises(EncodeError, match="total"):
        codec.encode(SignedVoteResponse(vote=bad), Dialect.V0_38)


def test_wrong_python_types_are_codec_errors() -> None:
    # each ignore below marks a deliberately ill-typed value: the codec must refuse it at run time
    with pytest.raises(EncodeError):
        codec.encode(PubKeyRequest(chain_id=5), Dialect.V0_38)  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        codec.encode(SignBytesRequest(value="text"), Dialect.V1)  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        codec.encode(PubKeyRequest(chain_id="\udc80"), Dialect.V0_38)
    with pytest.raises(EncodeError, match="not a privval message"):
        codec.encode(object(), Dialect.V0_38)  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        codec.decode_request("0a00", Dialect.V0_38)  # type: ignore[arg-type]


def test_negative_pol_round_is_a_ten_byte_varint() -> None:
    prop = Proposal(type=32, height=1, round=1, pol_round=-1)
    body = codec.encode(SignProposalRequest(proposal=prop, chain_id=""), Dialect.V0_38)
    assert bytes.fromhex("20ffffffffffffffffff01") in body
    assert codec.decode_request(body, Dialect.V0_38) == SignProposalRequest(prop, "")
