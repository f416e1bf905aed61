"""Builders shared by the state tests: votes, proposals, block IDs, a software signer."""

from __future__ import annotations

from nacl.signing import SigningKey, VerifyKey

from kms.privval.messages import BlockID, PartSetHeader, Proposal, Timestamp, Vote
from kms.signer.base import Signature

CHAIN = "test-chain"
PREVOTE, PRECOMMIT, PROPOSAL = 1, 2, 32
SEED = bytes(range(32))


def block(tag: int, parts_tag: int | None = None, total: int = 1) -> BlockID:
    """A complete block ID whose hash bytes are all `tag`."""
    p = tag if parts_tag is None else parts_tag
    return BlockID(bytes([tag]) * 32, PartSetHeader(total, bytes([p]) * 32))


NIL = BlockID()


def ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds, nanos)


def vote(
    type_: int,
    height: int,
    round_: int,
    block_id: BlockID = NIL,
    t: int = 1_700_000_000,
    extension: bytes = b"",
) -> Vote:
    return Vote(
        type=type_,
        height=height,
        round=round_,
        block_id=block_id,
        timestamp=ts(t),
        validator_address=b"\x11" * 20,
        validator_index=3,
        extension=extension,
    )


def proposal(
    height: int, round_: int, block_id: BlockID, pol_round: int = -1, t: int = 1_700_000_000
) -> Proposal:
    return Proposal(
        type=PROPOSAL,
        height=height,
        round=round_,
        pol_round=pol_round,
        block_id=block_id,
        timestamp=ts(t),
    )


class SoftSigner:
    """An Ed25519 key with the guard's callback shape; counts calls."""

    def __init__(self, seed: bytes = SEED, name: str = "soft") -> None:
        self.key = SigningKey(seed)
        self.name = name
        self.calls = 0

    @property
    def verify_key(self) -> VerifyKey:
        return self.key.verify_key

    async def __call__(self, message: bytes) -> Signature:
        self.calls += 1
        return Signature(self.key.sign(message).signature, self.name)
