"""Canonical sign bytes of votes, proposals and vote extensions (PRIVVAL.md §3), by hand.

Owns: the exact bytes a validator key signs, of every kind (`vote_sign_bytes`,
`proposal_sign_bytes`, `vote_extension_sign_bytes`, `raw_bytes_sign_bytes`), strict
parsers of such bytes back into `CanonicalVote` / `CanonicalProposal` for the
double-sign state machine, and the protobuf ranges both respect. The basic
validation of request objects is `kms.privval.validation`. Never touches generated
protobuf classes for votes and proposals (this is the hot path, and the bytes must not
depend on a library's serializer; only a v1 SignBytesRequest, signed as the privval
message itself, goes through kms.privval.codec), sockets, keys or state.

One cohesive module above 400 lines: the encoders and the strict parsers are two
halves of one contract (parse(encode(x)) == x) and are kept side by side.

Encoding rules (all verified against the conformance vectors):
* every result is `uvarint(len(body)) ‖ body` (the prefix is signed too);
* height / round are sfixed64, omitted when zero; `pol_round` is an int64 varint
  (-1 is 10 bytes), omitted when zero;
* a nil block ID (empty hash, zero total, empty part-set hash) is omitted; any other
  block ID is emitted, its hash field only when non-empty, its part-set header always;
* the timestamp is always emitted and re-encoded exactly as received;
* a proposal's canonical type is always 32; a vote's type is copied;
* the chain ID is the last field, omitted when empty.

The parsers are stricter than protobuf: exact length prefix, known fields with their
wire types only, each at most once, no trailing bytes, no zero-valued block ID, and
a mandatory timestamp. Anything else is a CodecError. For every value the encoder
accepts, parse(encode(x)) gives x back.

Validation returns a human-readable reason or None and never raises.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from kms.errors import CodecError
from kms.privval.celestia import raw_bytes_problem
from kms.privval.messages import (
    GO_ZERO_TIME_SECONDS,
    NIL_BLOCK_ID,
    BlockID,
    Dialect,
    PartSetHeader,
    Proposal,
    SignBytesRequest,
    SignedMsgType,
    SignRawBytesRequest,
    Timestamp,
    Vote,
)
from kms.varint import encode_varint

__all__ = [
    "HASH_SIZE",
    "MAX_TIMESTAMP_SECONDS",
    "MIN_TIMESTAMP_SECONDS",
    "CanonicalProposal",
    "CanonicalVote",
    "canonical_proposal",
    "canonical_vote",
    "decode_canonical_proposal",
    "decode_canonical_vote",
    "encode_canonical_proposal",
    "encode_canonical_vote",
    "proposal_sign_bytes",
    "vote_extension_sign_bytes",
    "vote_sign_bytes",
]

HASH_SIZE = 32
VALIDATOR_ADDRESS_SIZE = 20
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT32_MAX = (1 << 32) - 1
_U64 = 1 << 64
MIN_TIMESTAMP_SECONDS = GO_ZERO_TIME_SECONDS  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS = 253402300799  # 9999-12-31T23:59:59Z
MAX_NANOS = 999_999_999

_WT_VARINT, _WT_FIXED64, _WT_LEN = 0, 1, 2
_SFIXED64 = struct.Struct("<q")
_PROPOSAL_TYPE = int(SignedMsgType.PROPOSAL)


@dataclass(frozen=True, slots=True)
class CanonicalVote:
    type: int
    height: int
    round: int
    block_id: BlockID
    timestamp: Timestamp
    chain_id: str


@dataclass(frozen=True, slots=True)
class CanonicalProposal:
    type: int
    height: int
    round: int
    pol_round: int
    block_id: BlockID
    timestamp: Timestamp
    chain_id: str


# --- encoding primitives ---------------------------------------------------------------


def _check(value: int, lo: int, hi: int, what: str) -> int:
    if not lo <= value <= hi:
        raise CodecError(f"{what} out of range: {value}")
    return value


def _len_field(tag: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 0x80:
        return bytes((tag, n)) + payload
    return bytes((tag,)) + encode_varint(n) + payload


def _timestamp(ts: Timestamp) -> bytes:
    seconds = _check(ts.seconds, INT64_MIN, INT64_MAX, "timestamp seconds")
    nanos = _check(ts.nanos, INT32_MIN, INT32_MAX, "timestamp nanos")
    out = b""
    if seconds:
        out += b"\x08" + encode_varint(seconds)
    if nanos:
        out += b"\x10" + encode_varint(nanos)
    return out


def _block_id(bid: BlockID) -> bytes:
    psh = bid.part_set_header
    total = _check(psh.total, 0, UINT32_MAX, "part_set_header.total")
    psh_body = b""
    if total:
        psh_body += b"\x08" + encode_varint(total)
    if psh.hash:
        psh_body += _len_field(0x12, psh.hash)
    out = _len_field(0x0A, bid.hash) if bid.hash else b""
    return out + _len_field(0x12, psh_body)


def _height_round(height: int, round_: int) -> bytes:
    out = b""
    if _check(height, INT64_MIN, INT64_MAX, "height"):
        out += b"\x11" + _SFIXED64.pack(height)
    if _check(round_, INT64_MIN, INT64_MAX, "round"):
        out += b"\x19" + _SFIXED64.pack(round_)
    return out


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except (UnicodeEncodeError, AttributeError) as exc:
        raise CodecError(f"{what} is not a UTF-8 encodable string") from exc


@functools.lru_cache(maxsize=1024)
def _chain_id_field(tag: int, chain_id: str) -> bytes:
    """The chain ID field (the same few chains on every request: computed once each)."""
    return _len_field(tag, _utf8(chain_id, "chain_id")) if chain_id else b""


def _delimited(body: bytes) -> bytes:
    return encode_varint(len(body)) + body


# --- sign bytes -----------------------------------------------------------------------


def encode_canonical_vote(cv: CanonicalVote) -> bytes:
    """Length-prefixed CanonicalVote bytes."""
    return _vote_bytes(cv.type, cv.height, cv.round, cv.block_id, cv.timestamp, cv.chain_id)


def _vote_bytes(
    type_: int, height: int, round_: int, block_id: BlockID, ts: Timestamp, chain_id: str
) -> bytes:
    body = b""
    if _check(type_, INT32_MIN, INT32_MAX, "vote type"):
        body += b"\x08" + encode_varint(type_)
    body += _height_round(height, round_)
    if not block_id.is_nil:
        body += _len_field(0x22, _block_id(block_id))
    body += _len_field(0x2A, _timestamp(ts))
    body += _chain_id_field(0x32, chain_id)
    return _delimited(body)


def encode_canonical_proposal(cp: CanonicalProposal) -> bytes:
    """Length-prefixed CanonicalProposal bytes (type written as given; see below)."""
    return _proposal_bytes(
        cp.type, cp.height, cp.round, cp.pol_round, cp.block_id, cp.timestamp, cp.chain_id
    )


def _proposal_bytes(
    type_: int,
    height: int,
    round_: int,
    pol_round: int,
    block_id: BlockID,
    ts: Timestamp,
    chain_id: str,
) -> bytes:
    body = b""
    if _check(type_, INT32_MIN, INT32_MAX, "proposal type"):
        body += b"\x08" + encode_varint(type_)
    body += _height_round(height, round_)
    if _check(pol_round, INT64_MIN, INT64_MAX, "pol_round"):
        body += b"\x20" + encode_varint(pol_round)
    if not block_id.is_nil:
        body += _len_field(0x2A, _block_id(block_id))
    body += _len_field(0x32, _timestamp(ts))
    body += _chain_id_field(0x3A, chain_id)
    return _delimited(body)


def canonical_vote(chain_id: str, vote: Vote) -> CanonicalVote:
    """The canonical form of `vote` for `chain_id` (round widened to int64)."""
    return CanonicalVote(
        type=vote.type,
        height=vote.height,
        round=vote.round,
        block_id=vote.block_id,
        timestamp=vote.timestamp,
        chain_id=chain_id,
    )


def canonical_proposal(chain_id: str, proposal: Proposal) -> CanonicalProposal:
    """The canonical form of `proposal`: type forced to 32 (PROPOSAL)."""
    return CanonicalProposal(
        type=int(SignedMsgType.PROPOSAL),
        height=proposal.height,
        round=proposal.round,
        pol_round=proposal.pol_round,
        block_id=proposal.block_id,
        timestamp=proposal.timestamp,
        chain_id=chain_id,
    )


# The sign-bytes functions below encode straight from the request (the same bytes as
# encoding its canonical form, without building that object first: the hot path).


def vote_sign_bytes(chain_id: str, vote: Vote) -> bytes:
    """What the key signs for `vote` (Go `types.VoteSignBytes`). CodecError on bad ints."""
    return _vote_bytes(vote.type, vote.height, vote.round, vote.block_id, vote.timestamp, chain_id)


def proposal_sign_bytes(chain_id: str, proposal: Proposal) -> bytes:
    """What the key signs for `proposal` (Go `types.ProposalSignBytes`)."""
    return _proposal_bytes(
        _PROPOSAL_TYPE,
        proposal.height,
        proposal.round,
        proposal.pol_round,
        proposal.block_id,
        proposal.timestamp,
        chain_id,
    )


def vote_extension_sign_bytes(chain_id: str, vote: Vote) -> bytes:
    """CanonicalVoteExtension bytes: extension, height, round, chain ID (v0.38+)."""
    body = _len_field(0x0A, vote.extension) if vote.extension else b""
    body += _height_round(vote.height, vote.round)
    body += _chain_id_field(0x22, chain_id)
    return _delimited(body)


# --- parsing --------------------------------------------------------------------------


class _Reader:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def done(self) -> bool:
        return self.pos >= self.end

    def varint(self) -> int:
        result = 0
        shift = 0
        for i in range(10):
            if self.pos >= self.end:
                raise CodecError("truncated varint")
            byte = self.buf[self.pos]
            self.pos += 1
            if i == 9 and byte > 1:
                raise CodecError("varint overflows 64 bits")
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
        raise CodecError("varint longer than 10 bytes")

    def tag(self) -> tuple[int, int]:
        key = self.varint()
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise CodecError("field number 0")
        return number, wire_type

    def fixed64(self) -> int:
        if self.end - self.pos < 8:
            raise CodecError("truncated fixed64")
        (value,) = _SFIXED64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(value)

    def sub(self) -> _Reader:
        length = self.varint()
        if length > self.end - self.pos:
            raise CodecError("length-delimited field runs past its container")
        start = self.pos
        self.pos += length
        return _Reader(self.buf, start, start + length)

    def bytes_(self) -> bytes:
        r = self.sub()
        return bytes(r.buf[r.pos : r.end])


def _signed64(u: int) -> int:
    return u - _U64 if u >= 1 << 63 else u


def _signed32(u: int, what: str) -> int:
    """An int32 field: Go writes negatives sign-extended to 64 bits; accept only those."""
    value = _signed64(u)
    return _check(value, INT32_MIN, INT32_MAX, what)


# expected wire type per field number, per message
_VOTE_FIELDS = {1: _WT_VARINT, 2: _WT_FIXED64, 3: _WT_FIXED64, 4: _WT_LEN, 5: _WT_LEN, 6: _WT_LEN}
_PROPOSAL_FIELDS = {
    1: _WT_VARINT,
    2: _WT_FIXED64,
    3: _WT_FIXED64,
    4: _WT_VARINT,
    5: _WT_LEN,
    6: _WT_LEN,
    7: _WT_LEN,
}
_BLOCK_ID_FIELDS = {1: _WT_LEN, 2: _WT_LEN}
_PSH_FIELDS = {1: _WT_VARINT, 2: _WT_LEN}
_TIMESTAMP_FIELDS = {1: _WT_VARINT, 2: _WT_VARINT}


def _fields(r: _Reader, schema: dict[int, int], what: str) -> dict[int, int | _Reader]:
    """Read every field of a message: varint/fixed values as ints, LEN fields as readers."""
    seen: dict[int, int | _Reader] = {}
    while not r.done():
        number, wire_type = r.tag()
        expected = schema.get(number)
        if expected is None:
            raise CodecError(f"{what}: unexpected field {number}")
        if wire_type != expected:
            raise CodecError(f"{what}: field {number} has wire type {wire_type}")
        if number in seen:
            raise CodecError(f"{what}: field {number} repeated")
        if wire_type == _WT_VARINT:
            seen[number] = r.varint()
        elif wire_type == _WT_FIXED64:
            seen[number] = r.fixed64()
        else:
            seen[number] = r.sub()
    return seen


def _int(fields: dict[int, int | _Reader], number: int) -> int:
    value = fields.get(number, 0)
    assert isinstance(value, int)
    return value


def _sub(fields: dict[int, int | _Reader], number: int) -> _Reader | None:
    value = fields.get(number)
    assert value is None or isinstance(value, _Reader)
    return value


def _parse_timestamp(r: _Reader | None) -> Timestamp:
    if r is None:
        raise CodecError("timestamp missing")
    f = _fields(r, _TIMESTAMP_FIELDS, "timestamp")
    return Timestamp(seconds=_signed64(_int(f, 1)), nanos=_signed32(_int(f, 2), "timestamp nanos"))


def _parse_block_id(r: _Reader | None) -> BlockID:
    if r is None:
        return NIL_BLOCK_ID
    f = _fields(r, _BLOCK_ID_FIELDS, "block_id")
    hash_r = _sub(f, 1)
    psh_r = _sub(f, 2)
    total, psh_hash = 0, b""
    if psh_r is not None:
        pf = _fields(psh_r, _PSH_FIELDS, "part_set_header")
        total = _check(_int(pf, 1), 0, UINT32_MAX, "part_set_header.total")
        psh_hash_r = _sub(pf, 2)
        psh_hash = bytes(psh_hash_r.buf[psh_hash_r.pos : psh_hash_r.end]) if psh_hash_r else b""
    bid = BlockID(
        hash=bytes(hash_r.buf[hash_r.pos : hash_r.end]) if hash_r else b"",
        part_set_header=PartSetHeader(total=total, hash=psh_hash),
    )
    if bid.is_nil:
        raise CodecError("block_id present but zero (a nil block ID is omitted)")
    if psh_r is None:
        raise CodecError("block_id without part_set_header")
    return bid


def _chain_id(r: _Reader | None) -> str:
    if r is None:
        return ""
    try:
        return bytes(r.buf[r.pos : r.end]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError("chain_id is not valid UTF-8") from exc


def _unprefix(sign_bytes: bytes) -> _Reader:
    if not isinstance(sign_bytes, bytes | bytearray | memoryview):
        raise CodecError("sign bytes must be bytes")
    r = _Reader(bytes(sign_bytes))
    length = r.varint()
    if length != r.end - r.pos:
        raise CodecError(f"length prefix says {length} bytes but {r.end - r.pos} follow")
    return r


def _present_nonzero(fields: dict[int, int | _Reader], number: int, what: str) -> None:
    """Proto3 never writes a zero scalar; our encoder would not reproduce one."""
    if number in fields and fields[number] == 0:
        raise CodecError(f"{what} encoded explicitly as zero")


def decode_canonical_vote(sign_bytes: bytes) -> CanonicalVote:
    """Parse length-prefixed CanonicalVote bytes; CodecError on anything malformed."""
    f = _fields(_unprefix(sign_bytes), _VOTE_FIELDS, "canonical vote")
    for number, what in ((1, "type"), (2, "height"), (3, "round")):
        _present_nonzero(f, number, what)
    return CanonicalVote(
        type=_signed32(_int(f, 1), "vote type"),
        height=_int(f, 2),
        round=_int(f, 3),
        block_id=_parse_block_id(_sub(f, 4)),
        timestamp=_parse_timestamp(_sub(f, 5)),
        chain_id=_chain_id(_sub(f, 6)),
    )


def decode_canonical_proposal(sign_bytes: bytes) -> CanonicalProposal:
    """Parse length-prefixed CanonicalProposal bytes; CodecError on anything malformed."""
    f = _fields(_unprefix(sign_bytes), _PROPOSAL_FIELDS, "canonical proposal")
    for number, what in ((1, "type"), (2, "height"), (3, "round"), (4, "pol_round")):
        _present_nonzero(f, number, what)
    return CanonicalProposal(
        type=_signed32(_int(f, 1), "proposal type"),
        height=_int(f, 2),
        round=_int(f, 3),
        pol_round=_signed64(_int(f, 4)),
        block_id=_parse_block_id(_sub(f, 5)),
        timestamp=_parse_timestamp(_sub(f, 6)),
        chain_id=_chain_id(_sub(f, 7)),
    )


# --- raw bytes (v1 SignBytesRequest, the Celestia fork's SignRawBytesRequest) ------------

RAW_BYTES_SIGN_PREFIX = b"COMET::RAW_BYTES::SIGN"
"""Domain separation of raw-bytes signing (celestia-core's RawBytesMessageSignBytes prefix).

Canonical sign bytes start with a length prefix and then a field tag: here that tag
would be 'O' = 0x4f, field 9 with the invalid wire type 7, so raw-bytes sign bytes can
never equal a vote's, a proposal's or an extension's."""


def raw_bytes_sign_bytes(req: SignBytesRequest | SignRawBytesRequest, dialect: Dialect) -> bytes:
    """What we sign for a raw-bytes request.

    Celestia (kms.privval.celestia): prefix ‖ uvarint(len(P)) ‖ P with
    P = SignRawBytesRequest{chain_id = 1, raw_bytes = 2, unique_id = 3} (ValueError if
    a field is empty: the fork refuses those). v1 SignBytesRequest: the prefix, then the
    request itself as a length-delimited privval message.
    """
    if isinstance(req, SignRawBytesRequest) and dialect is Dialect.CELESTIA:
        problem = raw_bytes_problem(req)
        if problem is not None:
            raise ValueError(problem)
        body = (
            _len_field(0x0A, req.chain_id.encode())
            + _len_field(0x12, bytes(req.raw_bytes))
            + _len_field(0x1A, req.unique_id.encode())
        )
        return RAW_BYTES_SIGN_PREFIX + _delimited(body)
    from kms.privval.codec import encode  # local: only this rare path needs the codec

    return RAW_BYTES_SIGN_PREFIX + _delimited(encode(req, dialect))
