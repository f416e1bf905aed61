"""A one-validator chain whose only key lives in kms: every block needs kms's signatures.

The node's own priv_validator_key.json is moved out of its home before it starts, so
the only signer is `kms start`. Every commit signature is checked against our public
key over the canonical vote sign bytes rebuilt from the node's RPC.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from .cometbft import CometBFT, Node, Procs
from .results import Result
from .scenarios import Solo, solo_chain
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


def signed_by_replica(solo: Solo) -> Counter[str]:
    return Counter(
        str(e.get("replica"))
        for e in solo.kms.log_events()
        if e.get("msg") == "signed" and e.get("replica")
    )


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_softsign_chain_commits_30_blocks_signed_by_our_key(
    cometbft: CometBFT,
    make_node: Callable[[str], Node],
    procs: Procs,
    tmp_path: Path,
    record: Result,
    transport: str,
) -> None:
    record.scenario = f"single-softsign-{transport}"
    record.transport, record.signer = transport, "softsign"
    solo = solo_chain(cometbft, make_node, procs, tmp_path, transport=transport)
    record.notes["seconds_to_height"] = round(solo.wait(BLOCKS + 1, timeout=120), 1)
    assert_chain_signed_by_us(solo, BLOCKS)
    record.blocks = BLOCKS
    audit = solo.kms.audit_entries()
    signed_heights = {int(e["height"]) for e in audit if e["outcome"] == "signed"}
    assert set(range(1, BLOCKS + 1)) <= signed_heights
    # One node asking in order: nothing it asks for may be refused.
    assert [e for e in audit if e["outcome"] in ("refused", "error")] == []


def test_hsm_replicas_chain_commits_30_blocks_signed_by_our_key(
    cometbft: CometBFT,
    make_node: Callable[[str], Node],
    procs: Procs,
    tmp_path: Path,
    record: Result,
) -> None:
    record.scenario = "single-hsm-tcp"
    record.transport, record.signer = "tcp", "hsm-sim x2"
    solo = solo_chain(cometbft, make_node, procs, tmp_path, transport="tcp", hsms=2)
    record.notes["seconds_to_height"] = round(solo.wait(BLOCKS + 1, timeout=120), 1)
    assert_chain_signed_by_us(solo, BLOCKS)
    record.blocks = BLOCKS
    by_replica = signed_by_replica(solo)
    record.notes["signatures_by_replica"] = dict(by_replica)
    assert len(by_replica) == 2, f"expected both replicas to sign (spread): {by_replica}"
