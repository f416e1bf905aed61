"""Vote extensions (v0.38, v0.40, v1): enabled from height 2, the chain keeps going.

Once extensions are enabled, the node requires an extension signature on every non-nil
precommit (it panics without one) and the kvstore app's extensions are empty. The second
test turns kms's extension signing off to prove that the first test really exercises
that path: the chain must then stop at the enable height.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .cometbft import CometBFT, Node, Procs
from .results import Result
from .scenarios import solo_chain
from .test_single_validator import assert_chain_signed_by_us

pytestmark = [pytest.mark.e2e, pytest.mark.vote_extensions]

ENABLE_HEIGHT = 2
BLOCKS = 20


@pytest.mark.parametrize(
    ("transport", "hsms"), [("tcp", 0), ("unix", 2)], ids=["tcp-softsign", "unix-hsm"]
)
def test_chain_with_vote_extensions_keeps_committing(
    cometbft: CometBFT,
    make_node: Callable[[str], Node],
    procs: Procs,
    tmp_path: Path,
    record: Result,
    transport: str,
    hsms: int,
) -> None:
    signer = f"hsm-sim x{hsms}" if hsms else "softsign"
    record.scenario = f"vote-extensions-{'hsm' if hsms else 'softsign'}-{transport}"
    record.transport, record.signer, record.extensions = transport, signer, True
    solo = solo_chain(
        cometbft,
        make_node,
        procs,
        tmp_path,
        transport=transport,
        hsms=hsms,
        vote_extensions_height=ENABLE_HEIGHT,
    )
    record.notes["seconds_to_height"] = round(solo.wait(BLOCKS + 1, timeout=120), 1)
    section, key = cometbft.vote_extensions_param or ("", "")
    params = solo.node.rpc("consensus_params", height=BLOCKS)["consensus_params"]
    assert params[section][key] == str(ENABLE_HEIGHT)
    assert_chain_signed_by_us(solo, BLOCKS)
    record.blocks = BLOCKS


def test_chain_stops_at_enable_height_when_kms_does_not_sign_extensions(
    cometbft: CometBFT,
    make_node: Callable[[str], Node],
    procs: Procs,
    tmp_path: Path,
    record: Result,
) -> None:
    """Negative control for the test above: `sign_extensions = false` must break the chain."""
    record.scenario = "vote-extensions-unsigned-stops"
    record.transport, record.signer, record.extensions = "tcp", "softsign", True
    solo = solo_chain(
        cometbft,
        make_node,
        procs,
        tmp_path,
        vote_extensions_height=ENABLE_HEIGHT,
        start=False,
    )
    solo.kms.sign_extensions = False
    solo.kms.start()
    solo.node.start()
    # Blocks below the enable height need no extension signatures: the wiring works...
    solo.wait(ENABLE_HEIGHT - 1, timeout=60)
    # ...and then the first precommit that needs one stops the chain.
    highest, deadline = 0, time.monotonic() + 10
    while time.monotonic() < deadline and solo.node.running:
        highest = max(highest, solo.node.height())
        time.sleep(0.3)
    record.notes["node_exited"] = not solo.node.running
    record.notes["highest"] = highest
    assert highest < ENABLE_HEIGHT, f"chain reached {highest}\n{solo.node.log_tail()}"
    # Real nodes (v0.38.26, v0.40.0, v1.0.1) recover the panic inside consensus: the process
    # stays up, consensus halts with "CONSENSUS FAILURE!!!" naming the missing extension.
    failures = [line for line in solo.node.log_text().splitlines() if "CONSENSUS FAILURE" in line]
    assert failures and "extension" in failures[0], solo.node.log_tail()
