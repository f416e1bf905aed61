"""privval messages as frozen dataclasses: the only request/response types that cross layers.

Owns: the shape of every privval request and response `kms` handles, the protocol
dialects, and the small value types (timestamps, block IDs). Never touches bytes
on the wire (that is `kms.privval.codec`) or sign bytes (`kms.privval.canonical`).

Field names follow CometBFT's protobuf definitions (PRIVVAL.md §2). Integers are
plain Python ints; the codec range-checks them. `bytes` fields default to b"".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

GO_ZERO_TIME_SECONDS = -62135596800
"""Go's `time.Time{}` (0001-01-01T00:00:00Z) as protobuf seconds; what a missing timestamp means."""


class Dialect(enum.Enum):
    """The privval protocol dialect a validator node speaks (config `protocol_version`)."""

    V0_34 = "v0.34"
    V0_37 = "v0.37"
    V0_38 = "v0.38"
    V0_40 = "v0.40"  # the v0.38 wire plus a ~1 MiB message cap (and noise://, a transport)
    V1 = "v1"
    # celestia-core (a v0.38.x fork): the v0.38 wire, and tags 9/10 are its
    # SignRawBytesRequest / SignedRawBytesResponse, signed as kms.privval.celestia says.
    # Only ever chosen by configuration, never inferred from what a node sends.
    CELESTIA = "celestia"

    @property
    def has_vote_extensions(self) -> bool:
        """Vote.extension / extension_signature and CanonicalVoteExtension exist (v0.38+)."""
        return self in (Dialect.V0_38, Dialect.V0_40, Dialect.V1, Dialect.CELESTIA)

    @property
    def v1_pubkey_layout(self) -> bool:
        """PubKeyResponse uses pub_key_bytes (3) / pub_key_type (4) instead of pub_key (1)."""
        return self is Dialect.V1

    @classmethod
    def parse(cls, text: str) -> Dialect:
        """Accept 'v0.34', '0.34', 'v1', 'v1.0' and friends.

        tmkms's amino-era names ('legacy', 'v0.33') are not aliases: kms does not
        speak amino, and the config check refuses them with the supported list.
        """
        t = text.strip().lower()
        aliases = {
            "v0.39": "v0.38",  # same wire and the same 10 KiB cap as v0.38
            "v1.0": "v1",
            "1": "v1",
            "1.0": "v1",
        }
        t = aliases.get(t, t)
        if t[:1].isdigit():
            t = aliases.get("v" + t, "v" + t)
        for d in cls:
            if d.value == t:
                return d
        raise ValueError(
            f"unknown protocol version {text!r}; expected one of v0.34, v0.37, v0.38, v0.40, v1,"
            " celestia"
        )


class SignedMsgType(enum.IntEnum):
    UNKNOWN = 0
    PREVOTE = 1
    PRECOMMIT = 2
    PROPOSAL = 32


@dataclass(frozen=True, slots=True)
class Timestamp:
    """google.protobuf.Timestamp as the node sends it (re-encoded as-is into sign bytes)."""

    seconds: int = GO_ZERO_TIME_SECONDS
    nanos: int = 0


@dataclass(frozen=True, slots=True)
class PartSetHeader:
    total: int = 0
    hash: bytes = b""


@dataclass(frozen=True, slots=True)
class BlockID:
    hash: bytes = b""
    part_set_header: PartSetHeader = field(default_factory=PartSetHeader)

    @property
    def is_nil(self) -> bool:
        """Go's rule: nil only when the hash AND the whole part-set header are empty/zero."""
        return not self.hash and self.part_set_header.total == 0 and not self.part_set_header.hash


NIL_BLOCK_ID = BlockID()


@dataclass(frozen=True, slots=True)
class Vote:
    type: int
    height: int
    round: int
    block_id: BlockID = NIL_BLOCK_ID
    timestamp: Timestamp = field(default_factory=Timestamp)
    validator_address: bytes = b""
    validator_index: int = 0
    signature: bytes = b""
    extension: bytes = b""
    extension_signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Proposal:
    type: int
    height: int
    round: int
    pol_round: int
    block_id: BlockID = NIL_BLOCK_ID
    timestamp: Timestamp = field(default_factory=Timestamp)
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class RemoteSignerError:
    code: int
    description: str


# --- requests (node -> kms) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PubKeyRequest:
    chain_id: str


@dataclass(frozen=True, slots=True)
class SignVoteRequest:
    vote: Vote | None
    chain_id: str
    skip_extension_signing: bool = False  # v1 only


@dataclass(frozen=True, slots=True)
class SignProposalRequest:
    proposal: Proposal | None
    chain_id: str


@dataclass(frozen=True, slots=True)
class PingRequest:
    pass


@dataclass(frozen=True, slots=True)
class SignBytesRequest:
    """CometBFT v1 tag 9: sign arbitrary bytes (no chain ID, no domain separation)."""

    value: bytes


@dataclass(frozen=True, slots=True)
class SignRawBytesRequest:
    """Celestia/tmkms tag 9 on the v0.x dialects: raw bytes with a chain ID and unique ID."""

    chain_id: str
    raw_bytes: bytes
    unique_id: str


Request = (
    PubKeyRequest
    | SignVoteRequest
    | SignProposalRequest
    | PingRequest
    | SignBytesRequest
    | SignRawBytesRequest
)

# --- responses (kms -> node) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PubKeyResponse:
    """Ed25519 public key (32 bytes), or empty with an error.

    The codec writes the layout of the dialect (v0.x: pub_key field 1; v1: fields 3/4).
    """

    pub_key: bytes = b""
    error: RemoteSignerError | None = None
    key_type: str = "ed25519"


@dataclass(frozen=True, slots=True)
class SignedVoteResponse:
    vote: Vote | None = None
    error: RemoteSignerError | None = None


@dataclass(frozen=True, slots=True)
class SignedProposalResponse:
    proposal: Proposal | None = None
    error: RemoteSignerError | None = None


@dataclass(frozen=True, slots=True)
class PingResponse:
    pass


@dataclass(frozen=True, slots=True)
class SignBytesResponse:
    signature: bytes = b""
    error: RemoteSignerError | None = None


@dataclass(frozen=True, slots=True)
class SignedRawBytesResponse:
    signature: bytes = b""
    error: RemoteSignerError | None = None


Response = (
    PubKeyResponse
    | SignedVoteResponse
    | SignedProposalResponse
    | PingResponse
    | SignBytesResponse
    | SignedRawBytesResponse
)

Message = Request | Response
