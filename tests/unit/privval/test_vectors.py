"""Every vector in privval_signbytes_vectors.json, both directions where it applies."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from nacl.signing import SigningKey, VerifyKey

from kms.errors import CodecError, EncodeError
from kms.privval import canonical, codec
from kms.privval.framing import MessageReader, frame
from kms.privval.messages import (
    Dialect,
    SignedVoteResponse,
    SignProposalRequest,
    SignVoteRequest,
)

from . import vectorlib


def test_vector_file_is_complete(vectors_dir: Any) -> None:
    kinds = Counter(v["kind"] for v in vectorlib.all_vectors(vectors_dir))
    assert kinds["privval_message"] == 46
    assert kinds["vote_sign_bytes"] == 12
    assert kinds["proposal_sign_bytes"] == 6
    assert kinds["vote_extension_sign_bytes"] == 3
    assert kinds["canonical_vote_without_length_prefix"] == 2
    assert kinds["sign_vote_request_body"] == 1
    assert kinds["sign_proposal_request_body"] == 1


def _sign_bytes(vector: dict[str, Any]) -> bytes:
    kind = vector["kind"]
    chain_id = vector["chain_id"]
    if kind == "proposal_sign_bytes":
        return canonical.proposal_sign_bytes(chain_id, vectorlib.proposal(vector["proposal"]))
    vote = vectorlib.vote(vector["vote"])
    if kind == "vote_extension_sign_bytes":
        return canonical.vote_extension_sign_bytes(chain_id, vote)
    return canonical.vote_sign_bytes(chain_id, vote)


def test_sign_bytes_match_vector(signbytes_id: str, vector_by_id: Any) -> None:
    vector = vector_by_id(signbytes_id)
    assert vector["length_prefixed"] is True
    assert _sign_bytes(vector).hex() == vector["expected_hex"]


def test_sign_bytes_signature_matches_fixture_key(
    signed_id: str, vector_by_id: Any, vectors_dir: Any
) -> None:
    vector = vector_by_id(signed_id)
    expected_sig = vector["ed25519_signature_with_fixture_key_hex"]
    seed = bytes.fromhex(vectorlib.load(vectors_dir)["ed25519_fixture_private_seed_hex"])
    key = SigningKey(seed)
    message = _sign_bytes(vector)
    signature = key.sign(message).signature
    assert signature.hex() == expected_sig
    VerifyKey(bytes(key.verify_key)).verify(message, signature)


def test_canonical_body_without_prefix_matches_vector(nolength_id: str, vector_by_id: Any) -> None:
    vector = vector_by_id(nolength_id)
    sign_bytes = canonical.vote_sign_bytes(vector["chain_id"], vectorlib.vote(vector["vote"]))
    body = bytes.fromhex(vector["expected_hex"])
    assert sign_bytes == bytes([len(body)]) + body


def test_sign_bytes_vectors_parse_back_to_their_inputs(parse_id: str, vector_by_id: Any) -> None:
    vector = vector_by_id(parse_id)
    raw = bytes.fromhex(vector["expected_hex"])
    kind = vector["kind"]
    if kind == "vote_sign_bytes":
        vote = vectorlib.vote(vector["vote"])
        cv = canonical.decode_canonical_vote(raw)
        assert (cv.type, cv.height, cv.round) == (vote.type, vote.height, vote.round)
        assert (cv.block_id, cv.timestamp, cv.chain_id) == (
            vote.block_id,
            vote.timestamp,
            vector["chain_id"],
        )
        assert canonical.encode_canonical_vote(cv) == raw
    elif kind == "proposal_sign_bytes":
        prop = vectorlib.proposal(vector["proposal"])
        cp = canonical.decode_canonical_proposal(raw)
        assert cp.type == 32
        assert (cp.height, cp.round, cp.pol_round) == (prop.height, prop.round, prop.pol_round)
        assert (cp.block_id, cp.timestamp, cp.chain_id) == (
            prop.block_id,
            prop.timestamp,
            vector["chain_id"],
        )
        assert canonical.encode_canonical_proposal(cp) == raw
    else:
        raise AssertionError(kind)


def _dialects(vector: dict[str, Any]) -> tuple[Dialect, ...]:
    return vectorlib.SET_DIALECTS.get(vectorlib.vector_set(vector), ())


def test_privval_message_encodes_to_vector(message_id: str, vector_by_id: Any) -> None:
    vector = vector_by_id(message_id)
    dialects = _dialects(vector)
    assert dialects
    msg = vectorlib.privval_message(vector)
    for dialect in dialects:
        body = codec.encode(msg, dialect)
        assert body.hex() == vector["expected_hex"], dialect
        assert frame(body).hex() == vector["wire_hex_with_uvarint_prefix"]


def test_privval_message_decodes_from_vector(message_id: str, vector_by_id: Any) -> None:
    vector = vector_by_id(message_id)
    dialects = _dialects(vector)
    assert dialects
    expected = vectorlib.privval_message(vector)
    wire = bytes.fromhex(vector["wire_hex_with_uvarint_prefix"])
    for dialect in dialects:
        (body,) = MessageReader().feed(wire)
        if vector["message_variant"] in vectorlib.REQUEST_VARIANTS:
            assert codec.decode_request(body, dialect) == expected
            with pytest.raises(CodecError):
                codec.decode_response(body, dialect)
        else:
            assert codec.decode_response(body, dialect) == expected
            with pytest.raises(CodecError):
                codec.decode_request(body, dialect)


def test_v2_requests_decode_on_v1_dialect_ignoring_non_rp_extension(vectors_dir: Any) -> None:
    """A v2.x node's requests are v1 requests plus unknown fields 11/12, skipped like Go."""
    v2 = [
        v
        for v in vectorlib.all_vectors(vectors_dir)
        if v["kind"] == "privval_message"
        and vectorlib.vector_set(v) == "v2.x"
        and v["message_variant"] in vectorlib.REQUEST_VARIANTS
    ]
    assert len(v2) == 5
    for vector in v2:
        fields = dict(vector["fields"])
        if "vote" in fields:
            fields["vote"] = {k: x for k, x in fields["vote"].items() if k != "non_rp_extension"}
        expected = vectorlib.privval_message({**vector, "fields": fields})
        got = codec.decode_request(bytes.fromhex(vector["expected_hex"]), Dialect.V1)
        assert got == expected, vector["id"]


def test_pubkey_response_with_error_uses_default_key_type_without_emitting_it(
    vectors_dir: Any,
) -> None:
    """The dataclass default key_type must not leak into an error response."""
    from kms.privval.messages import PubKeyResponse, RemoteSignerError

    msg = PubKeyResponse(error=RemoteSignerError(1, "it's a error"))
    expected = {
        Dialect.V0_34: "12140a0012100801120c697427732061206572726f72",
        Dialect.V0_38: "12140a0012100801120c697427732061206572726f72",
        Dialect.V1: "121212100801120c697427732061206572726f72",
    }
    for dialect, hex_ in expected.items():
        assert codec.encode(msg, dialect).hex() == hex_


def _wrap(tag: int, body: bytes) -> bytes:
    return bytes([tag << 3 | 2]) + frame(body)


def test_sign_vote_request_body_vector_both_directions(vectors_dir: Any) -> None:
    (vector,) = [
        v for v in vectorlib.all_vectors(vectors_dir) if v["kind"] == "sign_vote_request_body"
    ]
    req = vector["sign_vote_request"]
    expected = SignVoteRequest(vote=vectorlib.vote(req["vote"]), chain_id=req["chain_id"])
    body = bytes.fromhex(vector["expected_hex"])
    for dialect in Dialect:
        assert codec.decode_request(_wrap(3, body), dialect) == expected
        assert codec.encode(expected, dialect) == _wrap(3, body)


def test_sign_proposal_request_body_vector_both_directions(vectors_dir: Any) -> None:
    (vector,) = [
        v for v in vectorlib.all_vectors(vectors_dir) if v["kind"] == "sign_proposal_request_body"
    ]
    req = vector["sign_proposal_request"]
    expected = SignProposalRequest(
        proposal=vectorlib.proposal(req["proposal"]), chain_id=req["chain_id"]
    )
    body = bytes.fromhex(vector["expected_hex"])
    for dialect in Dialect:
        assert codec.decode_request(_wrap(5, body), dialect) == expected
        assert codec.encode(expected, dialect) == _wrap(5, body)


def test_v034_decoder_drops_extension_fields_of_a_v038_vote(vectors_dir: Any) -> None:
    (vector,) = [
        v
        for v in vectorlib.all_vectors(vectors_dir)
        if v["id"] == "cometbft-v0.38.x-privval-Vote_Request"
    ]
    body = bytes.fromhex(vector["expected_hex"])
    got = codec.decode_request(body, Dialect.V0_34)
    assert isinstance(got, SignVoteRequest) and got.vote is not None
    assert got.vote.extension == b""
    on_038 = codec.decode_request(body, Dialect.V0_38)
    assert isinstance(on_038, SignVoteRequest) and on_038.vote is not None
    assert on_038.vote.extension == b"extension"
    # the v0.34 encoder refuses to put the extension on the wire
    with pytest.raises(EncodeError, match="extension"):
        codec.encode(SignedVoteResponse(vote=on_038.vote), Dialect.V0_34)
