"""privval `Message` bodies <-> frozen dataclasses, per dialect (PRIVVAL.md §2).

Owns: the only import of the generated protobuf classes (`kms._proto`), the mapping
between them and `kms.privval.messages`, and every per-dialect wire quirk. Never
touches framing (`kms.privval.framing`), sign bytes (`kms.privval.canonical`),
sockets, keys or state. Protobuf classes never leave this module and protobuf's own
exceptions never escape it: a body that does not decode is a `CodecError` (remote:
the peer sent it), a message that does not encode an `EncodeError` (local: our bug).
Above 400 lines as one thing: encoding and decoding of each message variant are
written next to each other, so the per-dialect quirks stay symmetric.

Dialect rules (table `_DIALECT_FEATURES`):
* v0.34 / v0.37: no vote extensions. Decoding drops Vote fields 9/10 (Go skips
  unknown fields); encoding a Vote with an extension or extension signature fails.
  Tags 9/10 are the Celestia/tmkms SignRawBytesRequest / SignedRawBytesResponse.
* v0.38, v0.40, celestia: vote extensions; tags 9/10 as on v0.34 (v0.40 differs only in the
  message size cap, `kms.privval.framing.max_message_size`).
* v1: PubKeyResponse uses pub_key_bytes (3) / pub_key_type (4) with field 1 reserved;
  SignVoteRequest has skip_extension_signing (3); tags 9/10 are CometBFT's
  SignBytesRequest / SignBytesResponse.

PubKeyResponse layout: we send exactly the layout of the configured dialect, which is
what the Go reference signer of that version sends (byte-identical to the upstream
vectors). Both Go decoders skip unknown fields, so a response carrying both layouts
would also be accepted by 0.x and 1.x nodes (PRIVVAL.md §2.6), but no reference
signer sends that and it has not been tried against a live node; the dialect is
configured per validator, so there is no need to guess.

Non-nullable fields (gogoproto) are always emitted: the vote/proposal of a response
(an empty one with Go zero time when the dataclass has None), block_id,
part_set_header, timestamp, and PubKeyResponse.pub_key on v0.x. On decoding, an
absent non-nullable field reads as its zero value, as in Go (a missing timestamp is
Go's zero time, not the Unix epoch); response objects are therefore never None after
decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from kms._proto.cometbft.privval.v1 import types_pb2 as _v1_privval
from kms._proto.tendermint.privval import types_pb2 as _tm_privval
from kms.errors import CodecError, EncodeError
from kms.privval.messages import (
    BlockID,
    Dialect,
    Message,
    PartSetHeader,
    PingRequest,
    PingResponse,
    Proposal,
    PubKeyRequest,
    PubKeyResponse,
    RemoteSignerError,
    Request,
    Response,
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

__all__ = ["decode_request", "decode_response", "encode"]

INT32 = (-(1 << 31), (1 << 31) - 1)
INT64 = (-(1 << 63), (1 << 63) - 1)
UINT32 = (0, (1 << 32) - 1)

V0_PUBKEY_ONEOF = {
    "ed25519": "ed25519",
    "secp256k1": "secp256k1",
    "bls12381": "bls12381",
    "mldsa65": "mldsa65",
    "secp256k1eth": "secp256k1eth",
}
"""key_type -> tendermint.crypto.PublicKey oneof field (1..5). Every variant decodes on
every v0.x dialect (nothing chokes on a key we do not use); encoding is limited to
the variants the dialect's nodes know (`_Features.pubkey_types`)."""
_OLD_KEY_TYPES = frozenset({"ed25519", "secp256k1"})
_ALL_KEY_TYPES = frozenset(V0_PUBKEY_ONEOF)


@dataclass(frozen=True, slots=True)
class _Features:
    privval: ModuleType
    vote_extensions: bool
    v1_pubkey: bool
    skip_extension_signing: bool
    sign_bytes_v1: bool  # tags 9/10 = SignBytes (v1) instead of SignRawBytes (Celestia)
    pubkey_types: frozenset[str] = _OLD_KEY_TYPES  # v0.x PublicKey variants we may send


_DIALECT_FEATURES: dict[Dialect, _Features] = {
    Dialect.V0_34: _Features(_tm_privval, False, False, False, False),
    Dialect.V0_37: _Features(_tm_privval, False, False, False, False),
    Dialect.V0_38: _Features(_tm_privval, True, False, False, False),  # also v0.39 nodes
    Dialect.V0_40: _Features(_tm_privval, True, False, False, False, _ALL_KEY_TYPES),
    Dialect.CELESTIA: _Features(_tm_privval, True, False, False, False),
    Dialect.V1: _Features(_v1_privval, True, True, True, True),
}

# oneof name -> (is request, dialect predicate on _Features)
_VARIANTS: dict[str, tuple[bool, Callable[[_Features], bool]]] = {
    "pub_key_request": (True, lambda f: True),
    "pub_key_response": (False, lambda f: True),
    "sign_vote_request": (True, lambda f: True),
    "signed_vote_response": (False, lambda f: True),
    "sign_proposal_request": (True, lambda f: True),
    "signed_proposal_response": (False, lambda f: True),
    "ping_request": (True, lambda f: True),
    "ping_response": (False, lambda f: True),
    "sign_bytes_request": (True, lambda f: f.sign_bytes_v1),
    "sign_bytes_response": (False, lambda f: f.sign_bytes_v1),
    "sign_raw_bytes_request": (True, lambda f: not f.sign_bytes_v1),
    "signed_raw_bytes_response": (False, lambda f: not f.sign_bytes_v1),
}


def _features(dialect: Dialect) -> _Features:
    try:
        return _DIALECT_FEATURES[dialect]
    except (KeyError, TypeError):
        raise CodecError(f"unknown dialect {dialect!r}") from None


def _int(value: object, bounds: tuple[int, int], what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CodecError(f"{what} must be an int, got {type(value).__name__}")
    lo, hi = bounds
    if not lo <= value <= hi:
        raise CodecError(f"{what} out of range [{lo}, {hi}]: {value}")
    return value


def _bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise CodecError(f"{what} must be bytes, got {type(value).__name__}")
    return bytes(value)


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise CodecError(f"{what} must be str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CodecError(f"{what} is not encodable as UTF-8") from None
    return value


# --- encoding ---------------------------------------------------------------------------


def _put_error(pb: Any, err: RemoteSignerError | None) -> None:
    if err is None:
        return
    pb.error.code = _int(err.code, INT32, "error.code")
    pb.error.description = _str(err.description, "error.description")


def _put_block_id(pb: Any, bid: BlockID) -> None:
    pb.SetInParent()
    pb.hash = _bytes(bid.hash, "block_id.hash")
    psh = bid.part_set_header
    pb.part_set_header.SetInParent()
    pb.part_set_header.total = _int(psh.total, UINT32, "part_set_header.total")
    pb.part_set_header.hash = _bytes(psh.hash, "part_set_header.hash")


def _put_timestamp(pb: Any, ts: Timestamp) -> None:
    pb.SetInParent()
    pb.seconds = _int(ts.seconds, INT64, "timestamp.seconds")
    pb.nanos = _int(ts.nanos, INT32, "timestamp.nanos")


def _put_vote(pb: Any, vote: Vote, feat: _Features) -> None:
    pb.SetInParent()
    pb.type = _int(vote.type, INT32, "vote.type")
    pb.height = _int(vote.height, INT64, "vote.height")
    pb.round = _int(vote.round, INT32, "vote.round")
    _put_block_id(pb.block_id, vote.block_id)
    _put_timestamp(pb.timestamp, vote.timestamp)
    pb.validator_address = _bytes(vote.validator_address, "vote.validator_address")
    pb.validator_index = _int(vote.validator_index, INT32, "vote.validator_index")
    pb.signature = _bytes(vote.signature, "vote.signature")
    extension = _bytes(vote.extension, "vote.extension")
    extension_signature = _bytes(vote.extension_signature, "vote.extension_signature")
    if feat.vote_extensions:
        pb.extension = extension
        pb.extension_signature = extension_signature
    elif extension or extension_signature:
        raise CodecError("vote extension fields do not exist on this dialect (v0.34/v0.37)")


def _put_proposal(pb: Any, proposal: Proposal) -> None:
    pb.SetInParent()
    pb.type = _int(proposal.type, INT32, "proposal.type")
    pb.height = _int(proposal.height, INT64, "proposal.height")
    pb.round = _int(proposal.round, INT32, "proposal.round")
    pb.pol_round = _int(proposal.pol_round, INT32, "proposal.pol_round")
    _put_block_id(pb.block_id, proposal.block_id)
    _put_timestamp(pb.timestamp, proposal.timestamp)
    pb.signature = _bytes(proposal.signature, "proposal.signature")


_EMPTY_VOTE = Vote(type=0, height=0, round=0)
_EMPTY_PROPOSAL = Proposal(type=0, height=0, round=0, pol_round=0)


def _put_pub_key_response(pb: Any, msg: PubKeyResponse, feat: _Features) -> None:
    pb.SetInParent()
    key = _bytes(msg.pub_key, "pub_key")
    key_type = _str(msg.key_type, "key_type")
    if feat.v1_pubkey:
        if key:
            if not key_type:
                raise CodecError("pub_key_type is empty for a non-empty key")
            pb.pub_key_bytes = key
            pb.pub_key_type = key_type
    else:
        pb.pub_key.SetInParent()  # non-nullable: `0a 00` even when empty
        if key:
            oneof_field = V0_PUBKEY_ONEOF.get(key_type)
            if oneof_field is None or key_type not in feat.pubkey_types:
                raise CodecError(f"key type {key_type!r} cannot be sent on this dialect")
            setattr(pb.pub_key, oneof_field, key)
    _put_error(pb, msg.error)


def _encode_into(m: Any, msg: Message, feat: _Features) -> None:
    match msg:
        case PubKeyRequest(chain_id=chain_id):
            m.pub_key_request.SetInParent()
            m.pub_key_request.chain_id = _str(chain_id, "chain_id")
        case PubKeyResponse():
            _put_pub_key_response(m.pub_key_response, msg, feat)
        case SignVoteRequest(vote=vote, chain_id=chain_id, skip_extension_signing=skip):
            r = m.sign_vote_request
            r.SetInParent()
            if vote is not None:
                _put_vote(r.vote, vote, feat)
            r.chain_id = _str(chain_id, "chain_id")
            if feat.skip_extension_signing:
                r.skip_extension_signing = bool(skip)
            elif skip:
                raise CodecError("skip_extension_signing exists only on the v1 dialect")
        case SignedVoteResponse(vote=vote, error=error):
            r = m.signed_vote_response
            r.SetInParent()
            _put_vote(r.vote, _EMPTY_VOTE if vote is None else vote, feat)
            _put_error(r, error)
        case SignProposalRequest(proposal=proposal, chain_id=chain_id):
            r = m.sign_proposal_request
            r.SetInParent()
            if proposal is not None:
                _put_proposal(r.proposal, proposal)
            r.chain_id = _str(chain_id, "chain_id")
        case SignedProposalResponse(proposal=proposal, error=error):
            r = m.signed_proposal_response
            r.SetInParent()
            _put_proposal(r.proposal, _EMPTY_PROPOSAL if proposal is None else proposal)
            _put_error(r, error)
        case PingRequest():
            m.ping_request.SetInParent()
        case PingResponse():
            m.ping_response.SetInParent()
        case SignBytesRequest(value=value):
            if not feat.sign_bytes_v1:
                raise CodecError("SignBytesRequest exists only on the v1 dialect")
            m.sign_bytes_request.SetInParent()
            m.sign_bytes_request.value = _bytes(value, "value")
        case SignBytesResponse(signature=signature, error=error):
            if not feat.sign_bytes_v1:
                raise CodecError("SignBytesResponse exists only on the v1 dialect")
            m.sign_bytes_response.SetInParent()
            m.sign_bytes_response.signature = _bytes(signature, "signature")
            _put_error(m.sign_bytes_response, error)
        case SignRawBytesRequest(chain_id=chain_id, raw_bytes=raw, unique_id=unique_id):
            if feat.sign_bytes_v1:
                raise CodecError("SignRawBytesRequest exists only on the v0.x dialects")
            r = m.sign_raw_bytes_request
            r.SetInParent()
            r.chain_id = _str(chain_id, "chain_id")
            r.raw_bytes = _bytes(raw, "raw_bytes")
            r.unique_id = _str(unique_id, "unique_id")
        case SignedRawBytesResponse(signature=signature, error=error):
            if feat.sign_bytes_v1:
                raise CodecError("SignedRawBytesResponse exists only on the v0.x dialects")
            r = m.signed_raw_bytes_response
            r.SetInParent()
            r.signature = _bytes(signature, "signature")
            _put_error(r, error)
        case _:
            raise CodecError(f"not a privval message: {type(msg).__name__}")


def encode(msg: Message, dialect: Dialect) -> bytes:
    """The protobuf body of `msg` wrapped in `Message` (no length prefix).

    Works for requests and responses. EncodeError (a local error: what we were about
    to send is wrong, never the peer's fault) when a field is out of range, of the
    wrong type, or does not exist on `dialect`.
    """
    try:
        feat = _features(dialect)
        m = feat.privval.Message()
        _encode_into(m, msg, feat)
        body: bytes = m.SerializeToString()
    except CodecError as exc:  # the shared field checks speak CodecError; here it is ours
        raise EncodeError(str(exc)) from None
    except Exception as exc:  # protobuf's own errors must not escape
        raise EncodeError(f"cannot encode {type(msg).__name__}: {exc}") from exc
    return body


# --- decoding ---------------------------------------------------------------------------


def _get_error(pb: Any) -> RemoteSignerError | None:
    if not pb.HasField("error"):
        return None
    return RemoteSignerError(code=int(pb.error.code), description=str(pb.error.description))


def _get_block_id(pb: Any) -> BlockID:
    return BlockID(
        hash=bytes(pb.hash),
        part_set_header=PartSetHeader(
            total=int(pb.part_set_header.total), hash=bytes(pb.part_set_header.hash)
        ),
    )


def _get_timestamp(parent: Any) -> Timestamp:
    if not parent.HasField("timestamp"):
        return Timestamp()  # Go: absent non-nullable stdtime = time.Time{} (zero time)
    return Timestamp(seconds=int(parent.timestamp.seconds), nanos=int(parent.timestamp.nanos))


def _get_vote(pb: Any, feat: _Features) -> Vote:
    return Vote(
        type=int(pb.type),
        height=int(pb.height),
        round=int(pb.round),
        block_id=_get_block_id(pb.block_id),
        timestamp=_get_timestamp(pb),
        validator_address=bytes(pb.validator_address),
        validator_index=int(pb.validator_index),
        signature=bytes(pb.signature),
        # v0.34/v0.37 have no fields 9/10: Go skips them as unknown fields.
        extension=bytes(pb.extension) if feat.vote_extensions else b"",
        extension_signature=bytes(pb.extension_signature) if feat.vote_extensions else b"",
    )


def _get_proposal(pb: Any) -> Proposal:
    return Proposal(
        type=int(pb.type),
        height=int(pb.height),
        round=int(pb.round),
        pol_round=int(pb.pol_round),
        block_id=_get_block_id(pb.block_id),
        timestamp=_get_timestamp(pb),
        signature=bytes(pb.signature),
    )


def _get_pub_key_response(pb: Any, feat: _Features) -> PubKeyResponse:
    if feat.v1_pubkey:
        return PubKeyResponse(
            pub_key=bytes(pb.pub_key_bytes),
            error=_get_error(pb),
            key_type=str(pb.pub_key_type),
        )
    which = pb.pub_key.WhichOneof("sum")
    key_type = {v: k for k, v in V0_PUBKEY_ONEOF.items()}.get(which, "") if which else ""
    key = bytes(getattr(pb.pub_key, which)) if which else b""
    return PubKeyResponse(pub_key=key, error=_get_error(pb), key_type=key_type)


_DECODERS: dict[str, Callable[[Any, _Features], Message]] = {
    "pub_key_request": lambda pb, f: PubKeyRequest(chain_id=str(pb.chain_id)),
    "pub_key_response": lambda pb, f: _get_pub_key_response(pb, f),
    "sign_vote_request": lambda pb, f: SignVoteRequest(
        vote=_get_vote(pb.vote, f) if pb.HasField("vote") else None,
        chain_id=str(pb.chain_id),
        skip_extension_signing=bool(pb.skip_extension_signing)
        if f.skip_extension_signing
        else False,
    ),
    "signed_vote_response": lambda pb, f: SignedVoteResponse(
        vote=_get_vote(pb.vote, f), error=_get_error(pb)
    ),
    "sign_proposal_request": lambda pb, f: SignProposalRequest(
        proposal=_get_proposal(pb.proposal) if pb.HasField("proposal") else None,
        chain_id=str(pb.chain_id),
    ),
    "signed_proposal_response": lambda pb, f: SignedProposalResponse(
        proposal=_get_proposal(pb.proposal), error=_get_error(pb)
    ),
    "ping_request": lambda pb, f: PingRequest(),
    "ping_response": lambda pb, f: PingResponse(),
    "sign_bytes_request": lambda pb, f: SignBytesRequest(value=bytes(pb.value)),
    "sign_bytes_response": lambda pb, f: SignBytesResponse(
        signature=bytes(pb.signature), error=_get_error(pb)
    ),
    "sign_raw_bytes_request": lambda pb, f: SignRawBytesRequest(
        chain_id=str(pb.chain_id), raw_bytes=bytes(pb.raw_bytes), unique_id=str(pb.unique_id)
    ),
    "signed_raw_bytes_response": lambda pb, f: SignedRawBytesResponse(
        signature=bytes(pb.signature), error=_get_error(pb)
    ),
}


def _first_tag(body: bytes) -> str:
    """Best-effort description of the first field of an undecodable body (for errors)."""
    value, shift = 0, 0
    for i, byte in enumerate(body[:10]):
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return f"first field number {value >> 3}, wire type {value & 7}"
        if i == 9:
            break
    return "no readable field tag"


def _decode(body: bytes, dialect: Dialect, want_request: bool) -> Message:
    feat = _features(dialect)
    if not isinstance(body, bytes | bytearray | memoryview):
        raise CodecError(f"body must be bytes, got {type(body).__name__}")
    body = bytes(body)
    expected = "request" if want_request else "response"
    try:
        m = feat.privval.Message()
        m.ParseFromString(body)
        which = m.WhichOneof("sum")
        if which is None:
            if not body:
                raise CodecError(f"empty privval message where a {expected} was expected")
            raise CodecError(
                f"privval message with no {dialect.value} variant ({_first_tag(body)})"
            )
        is_request, exists = _VARIANTS[which]
        if not exists(feat):
            raise CodecError(f"{which} does not exist on dialect {dialect.value}")
        if is_request != want_request:
            raise CodecError(f"got {which} where a {expected} was expected")
        return _DECODERS[which](getattr(m, which), feat)
    except CodecError:
        raise
    except Exception as exc:  # protobuf's DecodeError and friends must not escape
        raise CodecError(f"malformed privval {expected} ({dialect.value}): {exc}") from exc


def decode_request(body: bytes, dialect: Dialect) -> Request:
    """Decode a node -> KMS `Message` body. CodecError for responses, unknown or bad input."""
    msg = _decode(body, dialect, want_request=True)
    assert isinstance(
        msg,
        PubKeyRequest
        | SignVoteRequest
        | SignProposalRequest
        | PingRequest
        | SignBytesRequest
        | SignRawBytesRequest,
    )
    return msg


def decode_response(body: bytes, dialect: Dialect) -> Response:
    """Decode a KMS -> node `Message` body (used by the simulated node and tests)."""
    msg = _decode(body, dialect, want_request=False)
    assert isinstance(
        msg,
        PubKeyResponse
        | SignedVoteResponse
        | SignedProposalResponse
        | PingResponse
        | SignBytesResponse
        | SignedRawBytesResponse,
    )
    return msg
