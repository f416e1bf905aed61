"""An independent double-sign checker: collects every emitted signature and finds conflicts.

It knows nothing of the state machine. It decodes each emitted message from its
sign bytes and applies CometBFT's evidence rule directly: two signatures by the
same key for the same (height, round, type) over different block IDs (nil vs a
block counts) are a double sign. For votes it is stricter and demands one exact
message per (height, round, type); proposals may differ in the timestamp only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nacl.signing import VerifyKey

from kms.errors import CodecError
from kms.privval import canonical
from kms.privval.messages import BlockID, SignedMsgType


@dataclass
class Checker:
    verify_key: VerifyKey
    chain_id: str
    # (height, round, type) -> {(block_id, pol_round)} and -> {vote sign bytes}
    blocks: dict[tuple[int, int, int], set[tuple[BlockID, int]]] = field(default_factory=dict)
    vote_bytes: dict[tuple[int, int, int], set[bytes]] = field(default_factory=dict)
    count: int = 0

    def emitted(self, sign_bytes: bytes, signature: bytes) -> None:
        """Record one signature that left the signer; raise AssertionError on a conflict."""
        self.verify_key.verify(sign_bytes, signature)  # raises if it is not a real signature
        self.count += 1
        try:
            v = canonical.decode_canonical_vote(sign_bytes)
        except CodecError:
            v = None
        if v is not None:
            assert v.type in (SignedMsgType.PREVOTE, SignedMsgType.PRECOMMIT)
            key = (v.height, v.round, v.type)
            what = (v.block_id, -2)
            chain = v.chain_id
            self.vote_bytes.setdefault(key, set()).add(sign_bytes)
            assert len(self.vote_bytes[key]) == 1, f"two different votes signed at {key}"
        else:
            p = canonical.decode_canonical_proposal(sign_bytes)
            key = (p.height, p.round, p.type)
            what = (p.block_id, p.pol_round)
            chain = p.chain_id
        assert chain == self.chain_id
        seen = self.blocks.setdefault(key, set())
        seen.add(what)
        assert len(seen) == 1, f"double sign at {key}: {sorted(map(repr, seen))}"

    def highest(self) -> tuple[int, int, int]:
        """The highest (height, round, step) emitted, steps numbered 0/1/2."""
        step = {SignedMsgType.PROPOSAL: 0, SignedMsgType.PREVOTE: 1, SignedMsgType.PRECOMMIT: 2}
        return max(((h, r, step[SignedMsgType(t)]) for h, r, t in self.blocks), default=(0, 0, 0))
