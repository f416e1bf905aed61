"""Vote extensions (v0.38, v0.40, v1): enabled from height 2, the chain keeps going.

Once extensions are enabled, the node requires an extension signature on every non-nil
precommit (it panics without one) and the kvstore app's extensions are empty. The second
test turns kms's extension signing off to prove that the first test really exercises
that path: the chain must then stop at the enable height.
"""

from __future__ import annotations

import pytest

from .scenarios import Rig, highest_height, solo_chain
from .test_single_validator import chain_commits_blocks_signed_by_us

pytestmark = [pytest.mark.e2e, pytest.mark.vote_extensions]

ENABLE_HEIGHT = 2
BLOCKS = 20


@pytest.mark.parametrize(
    ("transport", "hsms"), [("tcp", 0), ("unix", 2)], ids=["tcp-softsign", "unix-hsm"]
)
def test_chain_with_vote_extensions_keeps_committing(rig: Rig, transport: str, hsms: int) -> None:
    signer = f"hsm-sim x{hsms}" if hsms else "softsign"
    scenario = f"vote-extensions-{'hsm' if hsms else 'softsign'}-{transport}"
    rig.describe(scenario, transport, signer, extensions=True)
    solo = solo_chain(rig, transport=transport, hsms=hsms, vote_extensions_height=ENABLE_HEIGHT)
    chain_commits_blocks_signed_by_us(rig, solo, BLOCKS)
    section, key = rig.cometbft.vote_extensions_param or ("", "")
    params = solo.node.rpc("consensus_params", height=BLOCKS)["consensus_params"]
    assert params[section][key] == str(ENABLE_HEIGHT)


def test_chain_stops_at_enable_height_when_kms_does_not_sign_extensions(rig: Rig) -> None:
    """Negative control for the test above: `sign_extensions = false` must break the chain."""
    rig.describe("vote-extensions-unsigned-stops", "tcp", "softsign", extensions=True)
    solo = solo_chain(rig, vote_extensions_height=ENABLE_HEIGHT, start=False)
    solo.kms.sign_extensions = False
    solo.kms.start()
    solo.node.start()
    # Blocks below the enable height need no extension signatures: the wiring works...
    solo.wait(ENABLE_HEIGHT - 1, timeout=60)
    # ...and then the first precommit that needs one stops the chain.
    highest = highest_height(solo.node, 10)
    rig.record.notes["node_exited"] = not solo.node.running
    rig.record.notes["highest"] = highest
    assert highest < ENABLE_HEIGHT, f"chain reached {highest}\n{solo.node.log_tail()}"
    # Real nodes (v0.38.26, v0.40.0, v1.0.1) recover the panic inside consensus: the process
    # stays up, consensus halts with "CONSENSUS FAILURE!!!" naming the missing extension.
    failures = [line for line in solo.node.log_text().splitlines() if "CONSENSUS FAILURE" in line]
    assert failures and "extension" in failures[0], solo.node.log_tail()
