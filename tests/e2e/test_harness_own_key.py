"""The harness itself, against nodes that sign with their own priv_validator_key.json.

No kms here: these tests prove the node side works (init, fast timeouts, ports, RPC
polling, genesis edits) and that our commit verification accepts what CometBFT's own
FilePV signs, so a failure in the kms tests points at kms and not at the harness.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .cometbft import CometBFT, Node, set_vote_extensions
from .results import Result
from .verify import FLAG_COMMIT, check_commits, evidence_in

pytestmark = pytest.mark.e2e

BLOCKS = 12


def own_key_node(make_node: Callable[[str], Node], record: Result) -> Node:
    """A one-validator chain on the node's own key file, started."""
    record.transport, record.signer = "own-key", "own-key"
    node = make_node("solo")
    node.configure()
    node.start()
    return node


def test_node_with_own_key_commits_blocks_we_can_verify(
    make_node: Callable[[str], Node], record: Result
) -> None:
    node = own_key_node(make_node, record)
    record.notes["seconds_to_height"] = round(node.wait_for_height(BLOCKS + 1, timeout=60), 1)
    key = node.validator_key()
    report = check_commits(node, range(1, BLOCKS + 1), node.chain_id, key.public_key, key.address)
    assert not report.bad and not report.missing, report.summary()
    assert all(c.flag == FLAG_COMMIT for c in report.checks)
    assert evidence_in(node, range(1, BLOCKS + 1)) == []
    record.blocks = BLOCKS


def test_commit_verification_rejects_another_chain_id(
    make_node: Callable[[str], Node], record: Result
) -> None:
    """The verifier must be able to fail: the same commits checked under a wrong chain id."""
    node = own_key_node(make_node, record)
    node.wait_for_height(4, timeout=60)
    key = node.validator_key()
    heights = range(1, 4)
    good = check_commits(node, heights, node.chain_id, key.public_key, key.address)
    assert not good.bad and not good.missing, good.summary()
    wrong_chain = check_commits(node, heights, node.chain_id + "x", key.public_key, key.address)
    assert len(wrong_chain.bad) == len(heights)
    other_key = bytes(32 - len(b"x")) + b"x"
    wrong_key = check_commits(node, heights, node.chain_id, other_key, key.address)
    assert len(wrong_key.bad) == len(heights)


@pytest.mark.vote_extensions
def test_node_with_own_key_and_vote_extensions_keeps_committing(
    cometbft: CometBFT, make_node: Callable[[str], Node], record: Result
) -> None:
    record.transport, record.signer, record.extensions = "own-key", "own-key", True
    node = make_node("solo")
    genesis = node.genesis()
    set_vote_extensions(genesis, cometbft, 2)
    node.write_genesis(genesis)
    node.configure()
    node.start()
    node.wait_for_height(BLOCKS + 1, timeout=60)
    section, key_name = cometbft.vote_extensions_param or ("", "")
    params = node.rpc("consensus_params", height=BLOCKS)["consensus_params"]
    assert params[section][key_name] == "2"
    key = node.validator_key()
    report = check_commits(node, range(1, BLOCKS + 1), node.chain_id, key.public_key, key.address)
    assert not report.bad and not report.missing, report.summary()
    record.blocks = BLOCKS
