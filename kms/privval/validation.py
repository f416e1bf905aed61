"""Basic validation of the votes and proposals a node asks us to sign (PRIVVAL.md §6 item 5).

Owns: what Go's Vote/Proposal.ValidateBasic checks before a signature is even
considered: types, positive heights, rounds in range, block IDs that are nil or
complete, timestamps within Go's range, extensions only where a precommit for a
block may carry one. Returns a human-readable reason or None and never raises.
Never builds sign bytes (`kms.privval.canonical`) and never decides about double
signing (`kms.state.machine`).
"""

from __future__ import annotations

from kms.privval.canonical import (
    HASH_SIZE,
    INT32_MAX,
    INT64_MAX,
    MAX_NANOS,
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    UINT32_MAX,
    VALIDATOR_ADDRESS_SIZE,
)
from kms.privval.messages import BlockID, Dialect, Proposal, SignedMsgType, Timestamp, Vote

__all__ = ["validate_proposal", "validate_vote"]


def _timestamp_reason(ts: Timestamp) -> str | None:
    if not MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS:
        return f"timestamp seconds {ts.seconds} outside 0001-01-01..9999-12-31"
    if not 0 <= ts.nanos <= MAX_NANOS:
        return f"timestamp nanos {ts.nanos} outside 0..999999999"
    return None


def _block_id_reason(bid: BlockID) -> str | None:
    """Go BlockID.ValidateBasic (hash sizes) plus 'nil or complete'."""
    # plain ifs: every request passes here, and a reason is formatted only on failure
    psh = bid.part_set_header
    if len(bid.hash) not in (0, HASH_SIZE):
        return f"block hash is {len(bid.hash)} bytes, not 32"
    if not 0 <= psh.total <= UINT32_MAX:
        return f"part_set_header.total {psh.total} out of range"
    if len(psh.hash) not in (0, HASH_SIZE):
        return f"part_set_header hash is {len(psh.hash)} bytes, not 32"
    if not bid.is_nil and not _is_complete(bid):
        return (
            "block ID must be either nil or complete (32-byte hash, total >= 1, "
            "32-byte part-set hash)"
        )
    return None


def _is_complete(bid: BlockID) -> bool:
    psh = bid.part_set_header
    return len(bid.hash) == HASH_SIZE and psh.total > 0 and len(psh.hash) == HASH_SIZE


_VOTE_TYPES = (SignedMsgType.PREVOTE, SignedMsgType.PRECOMMIT)


def validate_vote(vote: Vote | None, dialect: Dialect) -> str | None:
    """Why `vote` must not be signed on `dialect`, or None. Never raises.

    Go's Vote.ValidateBasic minus the checks that only apply to signed votes
    (signature present); the validator address may be empty (not signed) but if set
    must be 20 bytes.
    """
    if vote is None:
        return "sign vote request without a vote"
    try:
        nil = vote.block_id.is_nil
        extension_allowed = vote.type == SignedMsgType.PRECOMMIT and not nil
        if vote.type not in _VOTE_TYPES:
            return f"invalid vote type {vote.type}"
        if not 0 < vote.height <= INT64_MAX:
            return f"vote height {vote.height} must be > 0"
        if not 0 <= vote.round <= INT32_MAX:
            return f"vote round {vote.round} out of 0..2^31-1"
        if len(vote.validator_address) not in (0, VALIDATOR_ADDRESS_SIZE):
            return f"validator address is {len(vote.validator_address)} bytes, not 20"
        if not 0 <= vote.validator_index <= INT32_MAX:
            return f"validator index {vote.validator_index} out of range"
        if not dialect.has_vote_extensions and bool(vote.extension or vote.extension_signature):
            return f"vote extension fields on dialect {dialect.value}, which has none"
        if not extension_allowed and bool(vote.extension):
            return "vote extension on a prevote or nil precommit"
        if not extension_allowed and bool(vote.extension_signature):
            return "vote extension signature on a prevote or nil precommit"
        block_reason = _block_id_reason(vote.block_id)
        if block_reason is not None:
            return block_reason
        return _timestamp_reason(vote.timestamp)
    except Exception as exc:  # malformed dataclass contents (wrong types)
        return f"malformed vote: {exc!r}"


def validate_proposal(proposal: Proposal | None) -> str | None:
    """Why `proposal` must not be signed, or None. Never raises.

    Go's Proposal.ValidateBasic minus 'signature present': type 32, height > 0,
    0 <= round <= 2^31-1, -1 <= pol_round < round, a complete block ID, a valid
    timestamp.
    """
    if proposal is None:
        return "sign proposal request without a proposal"
    try:
        if proposal.type != SignedMsgType.PROPOSAL:
            return f"invalid proposal type {proposal.type}"
        if not 0 < proposal.height <= INT64_MAX:
            return f"proposal height {proposal.height} must be > 0"
        if not 0 <= proposal.round <= INT32_MAX:
            return f"proposal round {proposal.round} out of 0..2^31-1"
        if proposal.pol_round < -1:
            return f"pol_round {proposal.pol_round} < -1"
        if proposal.pol_round >= proposal.round:
            return f"pol_round {proposal.pol_round} >= round {proposal.round}"
        block_reason = _block_id_reason(proposal.block_id)
        if block_reason is not None:
            return block_reason
        if proposal.block_id.is_nil:
            return "proposal block ID must be complete, not nil"
        return _timestamp_reason(proposal.timestamp)
    except Exception as exc:  # malformed dataclass contents (wrong types)
        return f"malformed proposal: {exc!r}"
