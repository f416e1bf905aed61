"""Negative control: the suite can fail. kms holding the wrong key must not make blocks.

kms signs with a valid key that is not the genesis validator's. Everything else is
wired exactly as in the passing tests (same transport, config, state import). The node
must consider itself a non-validator, the one-validator chain must not produce a single
block, and the commit verification must reject that other key on a chain it did sign.
"""

from __future__ import annotations

import pytest

from .cometbft import ValidatorKey
from .scenarios import Rig, highest_height, solo_chain
from .verify import check_commits

pytestmark = pytest.mark.e2e

WATCH_SECONDS = 8


def test_kms_with_a_key_outside_the_genesis_produces_no_blocks(rig: Rig) -> None:
    rig.describe("negative-wrong-key", "tcp", "softsign")
    stranger = rig.make_node("stranger")  # only used for its freshly generated key
    wrong = ValidatorKey.load(stranger.key_path)
    solo = solo_chain(rig, key_override=wrong.path)
    assert wrong.public_key != solo.key.public_key

    highest = highest_height(solo.node, WATCH_SECONDS)
    solo.kms.assert_alive()
    assert solo.node.running, solo.node.describe()
    rig.record.notes["highest"] = highest
    assert highest == 0, f"blocks were committed without the genesis key\n{solo.node.log_tail()}"
    # The link itself worked: the node got the (wrong) public key from kms and says so.
    log = solo.node.log_text()
    assert "This node is not a validator" in log, solo.node.log_tail()
    assert wrong.address in log.upper(), solo.node.log_tail()


def test_commit_verification_fails_for_a_key_that_did_not_sign(rig: Rig) -> None:
    rig.describe("negative-verify-other-key", "tcp", "softsign")
    stranger = rig.make_node("stranger")
    wrong = ValidatorKey.load(stranger.key_path)
    solo = solo_chain(rig)
    solo.wait(5)
    heights = range(1, 5)
    ok = check_commits(solo.node, heights, solo.chain_id, solo.key.public_key, solo.key.address)
    assert not ok.bad and not ok.missing, ok.summary()
    # Our address, a key that did not sign: every signature must fail to verify.
    other = check_commits(solo.node, heights, solo.chain_id, wrong.public_key, solo.key.address)
    assert len(other.bad) == len(heights), other.summary()
