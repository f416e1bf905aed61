"""The double-sign decision: pure, synchronous, no I/O.

Owns: the per-chain sign state value (`SignState`), the request as the rules see
it (`SignCandidate`), and `decide()`, which says SIGN, REUSE or REFUSE. Never
touches files, clocks, sockets or keys: the store persists, the guard orders,
the signer signs.

The rules (DESIGN.md §5). Steps are numbered as tmkms numbers them: 0 proposal,
1 prevote, 2 precommit. Requests are ordered by the tuple (height, round, step).
For a request (H, R, S) with block ID B and sign bytes X against the stored
(h, r, s, b, x, sig):

0. height outside 1..2^63-1, round outside 0..2^31-1: REFUSE (never stored).
1. ``max_height`` is set and H > max_height: REFUSE (planned hand-over).
2. (H, R, S) < (h, r, s): REFUSE (height, round or step regression).
3. (H, R, S) > (h, r, s): SIGN.
4. (H, R, S) = (h, r, s):

   - X == x: REUSE the stored signature (identical request; this is also what
     makes a retry after a crash idempotent);
   - a vote whose canonical form differs from x only in the timestamp: REUSE the
     stored signature AND the stored timestamp (CometBFT FilePV behaviour: the
     node adopts the timestamp we return, so the reply is a valid vote for the
     very message we already signed);
   - a proposal for the same block ID and POL round with only a new timestamp:
     SIGN (proposals are not slashable, and the node ignores a returned
     timestamp, so replaying the stale signature would only waste the round);
   - no stored sign bytes for this exact HRS (a state imported from tmkms or
     CometBFT, which do not carry them, or written by `kms state set`): REFUSE.
     We cannot prove the request equals what was signed, so we fail closed;
   - anything else (other block ID, nil vs non-nil, other POL round, other
     chain ID, stored bytes that do not decode): REFUSE as a double sign.

Why these and no more: CometBFT's slashing conditions are about two signatures
from one validator for the same (height, round, type) with different block IDs
(DuplicateVoteEvidence; nil versus a block counts). Rules 2-4 make that
monotone: the watermark only moves up, so once we are past (H, R, S) nothing is
ever signed there again; and at the watermark itself exactly one vote message is
ever signed (a new timestamp gets the original back), and proposals only ever
for one block ID and POL round. So at most one block ID is signed per (H, R, S),
which is exactly the slashing condition, without refusing anything that is not
needed for it (proposals have no evidence type; their re-signing is harmless).

What we deliberately do NOT copy from tmkms: its cross-step rule refuses, at the
same (H, R), a precommit for block B after a prevote for block A (and any other
non-nil block change between steps). Prevoting A and then precommitting B (or
nil) in one round is legal Tendermint behaviour (the precommit follows a +2/3
polka the validator saw after prevoting) and produces no evidence, so refusing
it only costs liveness. We also do not re-sign a same-HRS vote with a fresh
timestamp as tmkms does: returning the stored signature is cheaper and yields
no second signature at all.

Vote extensions never enter the decision: `SignCandidate` has no extension
field, and the sign bytes are those of the canonical vote, which excludes the
extension (PRIVVAL.md §3.2, §5.5).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from kms.errors import CodecError
from kms.privval import canonical
from kms.privval.limits import MAX_HEIGHT, MAX_ROUND
from kms.privval.messages import (
    NIL_BLOCK_ID,
    BlockID,
    Proposal,
    SignedMsgType,
    Timestamp,
    Vote,
)
from kms.refusal import Code, Refusal, RefusalCarrier


class Step(enum.IntEnum):
    """Consensus steps as tmkms numbers them (CometBFT FilePV uses these plus one)."""

    PROPOSAL = 0
    PREVOTE = 1
    PRECOMMIT = 2


_STEPS = frozenset(int(s) for s in Step)


def step_name(step: int) -> str:
    """'proposal', 'prevote', 'precommit', or the number of a step that is none of them."""
    return Step(step).name.lower() if step in _STEPS else str(step)


STEP_OF_VOTE_TYPE: dict[int, Step] = {
    SignedMsgType.PREVOTE: Step.PREVOTE,
    SignedMsgType.PRECOMMIT: Step.PRECOMMIT,
}


class Action(enum.Enum):
    SIGN = "sign"
    REUSE = "reuse"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class SignState:
    """What a chain last signed: the double-sign watermark.

    `sign_bytes` and `signature` are empty for a state that never signed here
    (fresh, imported, or set by an operator); then the exact HRS is refused.
    """

    height: int
    round: int
    step: int
    block_id: BlockID = NIL_BLOCK_ID
    sign_bytes: bytes = b""
    signature: bytes = b""
    updated_at: datetime | None = None

    @property
    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)

    @classmethod
    def initial(cls) -> SignState:
        """The state of a chain that has never signed (height 0)."""
        return cls(height=0, round=0, step=0)


@dataclass(frozen=True, slots=True)
class SignCandidate:
    """A vote or proposal as the rules see it: its HRS, block ID and sign bytes."""

    kind: Literal["vote", "proposal"]
    height: int
    round: int
    step: int
    block_id: BlockID
    timestamp: Timestamp
    sign_bytes: bytes

    @property
    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)

    @classmethod
    def for_vote(cls, chain_id: str, vote: Vote) -> SignCandidate:
        """Build from a vote (raises ValueError for a type that is not prevote/precommit)."""
        step = STEP_OF_VOTE_TYPE.get(vote.type)
        if step is None:
            raise ValueError(f"vote type {vote.type} is neither prevote (1) nor precommit (2)")
        return cls(
            kind="vote",
            height=vote.height,
            round=vote.round,
            step=step,
            block_id=vote.block_id,
            timestamp=vote.timestamp,
            sign_bytes=canonical.vote_sign_bytes(chain_id, vote),
        )

    @classmethod
    def for_proposal(cls, chain_id: str, proposal: Proposal) -> SignCandidate:
        return cls(
            kind="proposal",
            height=proposal.height,
            round=proposal.round,
            step=Step.PROPOSAL,
            block_id=proposal.block_id,
            timestamp=proposal.timestamp,
            sign_bytes=canonical.proposal_sign_bytes(chain_id, proposal),
        )


@dataclass(frozen=True, slots=True)
class Decision(RefusalCarrier):
    """What to do with a candidate.

    SIGN: sign `sign_bytes` (the candidate's), then persist `advance(...)`.
    REUSE: reply with `signature` and `timestamp` (both stored); nothing to persist.
    REFUSE: reply with `refusal` (kms.refusal: its code, reason and metric label).
    """

    action: Action
    rule: str
    sign_bytes: bytes = b""
    timestamp: Timestamp | None = None
    signature: bytes = b""
    refusal: Refusal | None = None


def _refuse(rule: str, reason: str, code: Code) -> Decision:
    return Decision(Action.REFUSE, rule, refusal=Refusal.by_rule(rule, reason, code))


class _Same(enum.Enum):
    """How a same-HRS request relates to what is stored."""

    IDENTICAL = "identical"
    TIMESTAMP_ONLY = "timestamp-only"
    CONFLICT = "conflict"
    UNKNOWN = "unknown"  # nothing stored to compare with


# (candidate kind, relation) -> (action, rule); anything at the same HRS not in
# this table is a refusal.
_SAME_HRS: dict[tuple[str, _Same], tuple[Action, str]] = {
    ("vote", _Same.IDENTICAL): (Action.REUSE, "same-hrs-identical"),
    ("proposal", _Same.IDENTICAL): (Action.REUSE, "same-hrs-identical"),
    ("vote", _Same.TIMESTAMP_ONLY): (Action.REUSE, "same-hrs-vote-timestamp-only"),
    ("proposal", _Same.TIMESTAMP_ONLY): (Action.SIGN, "same-hrs-proposal-new-timestamp"),
}

_LEVELS = ("height", "round", "step")


def _timestamp_of(kind: str, sign_bytes: bytes) -> Timestamp:
    if kind == "vote":
        return canonical.decode_canonical_vote(sign_bytes).timestamp
    return canonical.decode_canonical_proposal(sign_bytes).timestamp


def _relation(stored: bytes, cand: SignCandidate) -> _Same:
    if not stored:
        return _Same.UNKNOWN
    if stored == cand.sign_bytes:
        return _Same.IDENTICAL
    try:
        if cand.kind == "vote":
            old_v = canonical.decode_canonical_vote(stored)
            new_v = canonical.decode_canonical_vote(cand.sign_bytes)
            same = replace(old_v, timestamp=new_v.timestamp) == new_v
        else:
            old_p = canonical.decode_canonical_proposal(stored)
            new_p = canonical.decode_canonical_proposal(cand.sign_bytes)
            same = replace(old_p, timestamp=new_p.timestamp) == new_p
    except CodecError:
        return _Same.CONFLICT  # stored bytes we cannot read never justify signing
    return _Same.TIMESTAMP_ONLY if same else _Same.CONFLICT


def _hrs_text(hrs: tuple[int, int, int]) -> str:
    h, r, s = hrs
    return f"{h}/{r}/{step_name(s)}"


def decide(state: SignState | None, req: SignCandidate, *, max_height: int | None) -> Decision:
    """Apply the rules in the module docstring; `state` None means never signed."""
    if not (0 < req.height <= MAX_HEIGHT and 0 <= req.round <= MAX_ROUND and req.step in _STEPS):
        return _refuse(
            "invalid",
            f"invalid height/round/step {req.height}/{req.round}/{req.step}",
            Code.INVALID,
        )
    if max_height is not None and req.height > max_height:
        return _refuse(
            "max-height",
            f"refusing to sign at height {req.height}: above max_height {max_height}",
            Code.MAX_HEIGHT,
        )
    if state is None or req.hrs > state.hrs:
        return Decision(Action.SIGN, "new-hrs", sign_bytes=req.sign_bytes, timestamp=req.timestamp)
    if req.hrs < state.hrs:
        level = next(n for n, a, b in zip(_LEVELS, req.hrs, state.hrs, strict=True) if a != b)
        return _refuse(
            f"{level}-regression",
            f"{level} regression: requested {_hrs_text(req.hrs)}, "
            f"already signed {_hrs_text(state.hrs)}",
            Code.REGRESSION,
        )

    relation = _relation(state.sign_bytes, req)
    if state.sign_bytes and not state.signature:
        relation = _Same.UNKNOWN  # sign bytes without a signature: corrupt, fail closed
    action, rule = _SAME_HRS.get(
        (req.kind, relation), (Action.REFUSE, f"same-hrs-{relation.value}")
    )
    if action is Action.SIGN:
        return Decision(action, rule, sign_bytes=req.sign_bytes, timestamp=req.timestamp)
    if action is Action.REUSE:
        stored_ts = (
            req.timestamp
            if relation is _Same.IDENTICAL
            else _timestamp_of(req.kind, state.sign_bytes)
        )
        return Decision(
            action,
            rule,
            sign_bytes=state.sign_bytes,
            timestamp=stored_ts,
            signature=state.signature,
        )
    why = {
        _Same.UNKNOWN: "the state has no sign bytes for this height/round/step, so a "
        "repeat cannot be told from a conflict",
        _Same.CONFLICT: f"conflicting data (block {block_id_text(req.block_id)}, "
        f"already signed block {block_id_text(state.block_id)})",
    }[relation]
    return _refuse(
        rule,
        f"double signing requested at height {req.height} "
        f"(round {req.round}, {step_name(req.step)}): {why}",
        Code.DOUBLE_SIGN,
    )


def advance(req: SignCandidate, signature: bytes, now: datetime) -> SignState:
    """The state after signing `req` (a SIGN decision) with `signature`."""
    return SignState(
        height=req.height,
        round=req.round,
        step=req.step,
        block_id=req.block_id,
        sign_bytes=req.sign_bytes,
        signature=signature,
        updated_at=now,
    )


def block_id_text(block_id: BlockID) -> str:
    """A short printable block ID: '<nil>' or the first 12 hex digits of the hash."""
    if block_id.is_nil:
        return "<nil>"
    if not block_id.hash:
        return f"<no hash, {block_id.part_set_header.total} parts>"
    return block_id.hash.hex().upper()[:12]
