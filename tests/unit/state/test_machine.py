"""The pure double-sign rules (DESIGN.md §5), table by table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from nacl.signing import SigningKey

from kms.privval import canonical
from kms.privval.messages import Proposal, Vote
from kms.refusal import Code
from kms.state.machine import (
    Action,
    SignCandidate,
    SignState,
    Step,
    advance,
    decide,
)
from tests.unit.state.helpers import (
    CHAIN,
    NIL,
    PRECOMMIT,
    PREVOTE,
    SEED,
    block,
    proposal,
    vote,
)

KEY = SigningKey(SEED)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
A, B = block(0xAA), block(0xBB)


def cand(msg: Vote | Proposal, chain: str = CHAIN) -> SignCandidate:
    if isinstance(msg, Vote):
        return SignCandidate.for_vote(chain, msg)
    return SignCandidate.for_proposal(chain, msg)


def signed(msg: Vote | Proposal, chain: str = CHAIN) -> SignState:
    """The state after really signing `msg`."""
    c = cand(msg, chain)
    return advance(c, KEY.sign(c.sign_bytes).signature, NOW)


# --- ordering: (height, round, step) -----------------------------------------------------

BASE = vote(PREVOTE, 10, 2, A)  # stored at 10/2/prevote

ORDER_CASES = [
    # (name, request, expected action, expected rule)
    ("next height", vote(PREVOTE, 11, 0, B), Action.SIGN, "new-hrs"),
    ("next round", vote(PREVOTE, 10, 3, B), Action.SIGN, "new-hrs"),
    ("next step", vote(PRECOMMIT, 10, 2, A), Action.SIGN, "new-hrs"),
    ("height regression", vote(PRECOMMIT, 9, 5, A), Action.REFUSE, "height-regression"),
    ("round regression", vote(PRECOMMIT, 10, 1, A), Action.REFUSE, "round-regression"),
    ("step regression", proposal(10, 2, A), Action.REFUSE, "step-regression"),
]


@pytest.mark.parametrize(
    ("request_msg", "action", "rule"),
    [c[1:] for c in ORDER_CASES],
    ids=[c[0] for c in ORDER_CASES],
)
def test_requests_are_ordered_by_height_round_step(
    request_msg: Vote | Proposal, action: Action, rule: str
) -> None:
    d = decide(signed(BASE), cand(request_msg), max_height=None)
    assert (d.action, d.rule) == (action, rule)
    if action is Action.REFUSE:
        assert d.error_code == Code.REGRESSION
        assert d.reason is not None and "regression" in d.reason
        assert d.signature == b""
    else:
        assert d.sign_bytes == cand(request_msg).sign_bytes


def test_fresh_chain_signs_anything_valid() -> None:
    assert decide(None, cand(vote(PREVOTE, 1, 0, A)), max_height=None).action is Action.SIGN
    initial = SignState.initial()
    assert decide(initial, cand(proposal(1, 0, A)), max_height=None).action is Action.SIGN


def test_prevote_a_then_precommit_b_in_same_round_is_signed_unlike_tmkms() -> None:
    # Legal Tendermint (a later polka for B); tmkms's cross-step rule would refuse it.
    d = decide(signed(vote(PREVOTE, 10, 0, A)), cand(vote(PRECOMMIT, 10, 0, B)), max_height=None)
    assert d.action is Action.SIGN


def test_proposal_a_then_prevote_nil_in_same_round_is_signed() -> None:
    d = decide(signed(proposal(10, 0, A)), cand(vote(PREVOTE, 10, 0, NIL)), max_height=None)
    assert d.action is Action.SIGN


# --- same HRS -------------------------------------------------------------------------------

SAME_HRS_CASES = [
    # (name, stored message, request, action, rule)
    (
        "identical prevote",
        vote(PREVOTE, 5, 0, A),
        vote(PREVOTE, 5, 0, A),
        Action.REUSE,
        "same-hrs-identical",
    ),
    (
        "identical nil precommit",
        vote(PRECOMMIT, 5, 1, NIL),
        vote(PRECOMMIT, 5, 1, NIL),
        Action.REUSE,
        "same-hrs-identical",
    ),
    (
        "identical proposal",
        proposal(5, 0, A),
        proposal(5, 0, A),
        Action.REUSE,
        "same-hrs-identical",
    ),
    (
        "vote, only the timestamp differs",
        vote(PREVOTE, 5, 0, A),
        vote(PREVOTE, 5, 0, A, t=9),
        Action.REUSE,
        "same-hrs-vote-timestamp-only",
    ),
    (
        "nil vote, only the timestamp differs",
        vote(PRECOMMIT, 5, 0),
        vote(PRECOMMIT, 5, 0, t=9),
        Action.REUSE,
        "same-hrs-vote-timestamp-only",
    ),
    (
        "proposal, same block and pol_round, new timestamp",
        proposal(5, 0, A),
        proposal(5, 0, A, t=9),
        Action.SIGN,
        "same-hrs-proposal-new-timestamp",
    ),
    (
        "vote for another block",
        vote(PREVOTE, 5, 0, A),
        vote(PREVOTE, 5, 0, B),
        Action.REFUSE,
        "same-hrs-conflict",
    ),
    (
        "vote for another block and timestamp",
        vote(PREVOTE, 5, 0, A),
        vote(PREVOTE, 5, 0, B, t=9),
        Action.REFUSE,
        "same-hrs-conflict",
    ),
    (
        "nil after a block",
        vote(PREVOTE, 5, 0, A),
        vote(PREVOTE, 5, 0, NIL),
        Action.REFUSE,
        "same-hrs-conflict",
    ),
    (
        "block after nil",
        vote(PRECOMMIT, 5, 0, NIL),
        vote(PRECOMMIT, 5, 0, A),
        Action.REFUSE,
        "same-hrs-conflict",
    ),
    (
        "same hash, other part-set header",
        vote(PREVOTE, 5, 0, A),
        vote(PREVOTE, 5, 0, block(0xAA, 0xCC)),
        Action.REFUSE,
        "same-hrs-conflict",
    ),
    (
        "same hash, other part total",
        vote(PREVOTE, 5, 0, A),
        vote(PREVOTE, 5, 0, block(0xAA, total=2)),
        Action.REFUSE,
        "same-hrs-conflict",
    ),
    (
        "proposal for another block",
        proposal(5, 0, A),
        proposal(5, 0, B),
        Action.REFUSE,
        "same-hrs-conflict",
    ),
    (
        "proposal with another pol_round",
        proposal(5, 3, A, pol_round=-1),
        proposal(5, 3, A, pol_round=1),
        Action.REFUSE,
        "same-hrs-conflict",
    ),
    (
        "proposal with another pol_round and timestamp",
        proposal(5, 3, A, pol_round=0),
        proposal(5, 3, A, pol_round=1, t=9),
        Action.REFUSE,
        "same-hrs-conflict",
    ),
]


@pytest.mark.parametrize(
    ("stored", "request_msg", "action", "rule"),
    [c[1:] for c in SAME_HRS_CASES],
    ids=[c[0] for c in SAME_HRS_CASES],
)
def test_same_height_round_step(
    stored: Vote | Proposal, request_msg: Vote | Proposal, action: Action, rule: str
) -> None:
    state = signed(stored)
    d = decide(state, cand(request_msg), max_height=None)
    assert (d.action, d.rule) == (action, rule)
    if action is Action.REUSE:
        # the stored signature, over the stored bytes, with the stored timestamp
        assert d.signature == state.signature
        assert d.sign_bytes == state.sign_bytes
        assert d.timestamp == stored.timestamp
        KEY.verify_key.verify(d.sign_bytes, d.signature)
    elif action is Action.SIGN:
        assert d.sign_bytes == cand(request_msg).sign_bytes != state.sign_bytes
    else:
        assert d.error_code == Code.DOUBLE_SIGN
        assert d.reason is not None
        assert d.reason.startswith(f"double signing requested at height {request_msg.height}")
        assert d.signature == b""


def test_reused_vote_timestamp_rebuilds_exactly_the_signed_bytes() -> None:
    first = vote(PREVOTE, 7, 1, A, t=100)
    state = signed(first)
    d = decide(state, cand(vote(PREVOTE, 7, 1, A, t=200)), max_height=None)
    assert d.action is Action.REUSE and d.timestamp is not None
    # what the node will assemble: its vote with our returned timestamp
    replied = replace(vote(PREVOTE, 7, 1, A, t=200), timestamp=d.timestamp)
    KEY.verify_key.verify(canonical.vote_sign_bytes(CHAIN, replied), d.signature)


def test_vote_extensions_do_not_affect_the_decision() -> None:
    state = signed(vote(PRECOMMIT, 5, 0, A, extension=b"one"))
    again = cand(vote(PRECOMMIT, 5, 0, A, extension=b"two"))
    assert decide(state, again, max_height=None).action is Action.REUSE
    other = cand(vote(PRECOMMIT, 5, 0, B, extension=b"one"))
    assert decide(state, other, max_height=None).action is Action.REFUSE


def test_same_hrs_on_another_chain_id_is_a_conflict() -> None:
    state = signed(vote(PREVOTE, 5, 0, A), chain="chain-a")
    d = decide(state, cand(vote(PREVOTE, 5, 0, A), chain="chain-b"), max_height=None)
    assert (d.action, d.error_code) == (Action.REFUSE, Code.DOUBLE_SIGN)


# --- fail closed on what we cannot compare ---------------------------------------------------


@pytest.mark.parametrize(
    "request_msg",
    [vote(PREVOTE, 8, 0, A), vote(PREVOTE, 8, 0, NIL), proposal(8, 0, A)],
    ids=["block", "nil", "proposal"],
)
def test_same_hrs_without_stored_sign_bytes_is_refused(request_msg: Vote | Proposal) -> None:
    # e.g. imported from tmkms/CometBFT without signbytes, or set by an operator
    c = cand(request_msg)
    state = SignState(c.height, c.round, c.step, c.block_id)
    d = decide(state, c, max_height=None)
    assert (d.action, d.error_code) == (Action.REFUSE, Code.DOUBLE_SIGN)
    assert d.rule == "same-hrs-unknown"
    assert d.reason is not None and "no sign bytes" in d.reason
    # ... but the next step is fine
    nxt = cand(vote(PRECOMMIT, 8, 0, A))
    assert decide(state, nxt, max_height=None).action is Action.SIGN


def test_stored_sign_bytes_without_signature_are_refused() -> None:
    state = replace(signed(vote(PREVOTE, 5, 0, A)), signature=b"")
    d = decide(state, cand(vote(PREVOTE, 5, 0, A)), max_height=None)
    assert (d.action, d.error_code) == (Action.REFUSE, Code.DOUBLE_SIGN)


def test_undecodable_stored_sign_bytes_are_a_conflict_not_a_reuse() -> None:
    state = replace(signed(vote(PREVOTE, 5, 0, A)), sign_bytes=b"\x05garbage")
    d = decide(state, cand(vote(PREVOTE, 5, 0, A, t=9)), max_height=None)
    assert (d.action, d.error_code) == (Action.REFUSE, Code.DOUBLE_SIGN)


# --- max_height and invalid values ------------------------------------------------------------


def test_max_height_refuses_above_and_signs_at() -> None:
    above = decide(None, cand(vote(PREVOTE, 101, 0, A)), max_height=100)
    assert (above.action, above.error_code) == (Action.REFUSE, Code.MAX_HEIGHT)
    assert above.reason is not None and "max_height 100" in above.reason
    assert decide(None, cand(vote(PREVOTE, 100, 0, A)), max_height=100).action is Action.SIGN


def test_max_height_applies_even_to_an_identical_repeat() -> None:
    state = signed(vote(PREVOTE, 101, 0, A))
    d = decide(state, cand(vote(PREVOTE, 101, 0, A)), max_height=100)
    assert d.action is Action.REFUSE


@pytest.mark.parametrize(
    ("height", "round_"),
    [(0, 0), (-1, 0), (1, -1), (2**63, 0), (1, 2**31)],
)
def test_out_of_range_height_or_round_is_refused_and_never_stored(height: int, round_: int) -> None:
    c = replace(cand(vote(PREVOTE, 1, 0, A)), height=height, round=round_)
    d = decide(None, c, max_height=None)
    assert (d.action, d.error_code) == (Action.REFUSE, Code.INVALID)


def test_vote_of_unknown_type_has_no_step() -> None:
    with pytest.raises(ValueError, match="neither prevote"):
        SignCandidate.for_vote(CHAIN, vote(32, 1, 0, A))


def test_steps_are_numbered_like_tmkms() -> None:
    assert (
        [cand(m).step for m in (proposal(1, 0, A), vote(PREVOTE, 1, 0), vote(PRECOMMIT, 1, 0))]
        == [
            Step.PROPOSAL,
            Step.PREVOTE,
            Step.PRECOMMIT,
        ]
        == [0, 1, 2]
    )
