"""A one-validator chain whose only key lives in kms: every block needs kms's signatures.

The node's own priv_validator_key.json is moved out of its home before it starts, so
the only signer is `kms start`. Every commit signature is checked against our public
key over the canonical vote sign bytes rebuilt from the node's RPC.
"""

from __future__ import annotations

from collections import Counter

import pytest

from .scenarios import Rig, Solo, solo_chain
from .verify import FLAG_COMMIT, check_commits, evidence_in

pytestmark = pytest.mark.e2e

BLOCKS = 30


def assert_chain_signed_by_us(solo: Solo, last: int) -> None:
    heights = range(1, last + 1)
    report = check_commits(solo.node, heights, solo.chain_id, solo.key.public_key, solo.key.address)
    assert not report.bad and not report.missing, report.summary() + "\n" + str(report.bad[:3])
    assert all(c.flag == FLAG_COMMIT for c in report.checks)
    vals = solo.node.validators(last)
    assert [v["address"].upper() for v in vals] == [solo.key.address]
    assert evidence_in(solo.node, heights) == []


def chain_commits_blocks_signed_by_us(
    rig: Rig, solo: Solo, blocks: int, timeout: float = 120
) -> None:
    """Wait for `blocks` + 1 (recording how long it took), then check every commit up to
    `blocks` carries our signature."""
    rig.record.notes["seconds_to_height"] = round(solo.wait(blocks + 1, timeout=timeout), 1)
    assert_chain_signed_by_us(solo, blocks)
    rig.record.blocks = blocks


def signed_by_replica(solo: Solo) -> Counter[str]:
    return Counter(
        str(e.get("replica"))
        for e in solo.kms.log_events()
        if e.get("msg") == "signed" and e.get("replica")
    )


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_softsign_chain_commits_30_blocks_signed_by_our_key(rig: Rig, transport: str) -> None:
    rig.describe(f"single-softsign-{transport}", transport, "softsign")
    solo = solo_chain(rig, transport=transport)
    chain_commits_blocks_signed_by_us(rig, solo, BLOCKS)
    audit = solo.kms.audit_entries()
    signed_heights = {int(e["height"]) for e in audit if e["outcome"] == "signed"}
    assert set(range(1, BLOCKS + 1)) <= signed_heights
    # One node asking in order: nothing it asks for may be refused.
    assert [e for e in audit if e["outcome"] in ("refused", "error")] == []


def test_hsm_replicas_chain_commits_30_blocks_signed_by_our_key(rig: Rig) -> None:
    rig.describe("single-hsm-tcp", "tcp", "hsm-sim x2")
    solo = solo_chain(rig, transport="tcp", hsms=2)
    chain_commits_blocks_signed_by_us(rig, solo, BLOCKS)
    by_replica = signed_by_replica(solo)
    rig.record.notes["signatures_by_replica"] = dict(by_replica)
    assert len(by_replica) == 2, f"expected both replicas to sign (spread): {by_replica}"
