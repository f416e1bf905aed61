"""Crashes and restarts: kill -9 kms at random moments, restart and kill -9 the node.

The chain must continue after each event, the state file must never go backwards (a
watcher polls it every 50 ms for the whole run), kms must never sign two different
blocks at the same height/round/step (audit log), every commit must carry a valid
signature of ours, and no block may carry evidence.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .cometbft import CometBFT, Node, Procs
from .kmsproc import StateWatcher, conflicting_signatures
from .results import Result
from .scenarios import solo_chain
from .test_single_validator import assert_chain_signed_by_us

pytestmark = pytest.mark.e2e

KMS_CRASHES = 3
BLOCKS_BETWEEN = 3


def test_kms_kill9_and_node_restarts_keep_the_chain_going(
    cometbft: CometBFT,
    make_node: Callable[[str], Node],
    procs: Procs,
    tmp_path: Path,
    record: Result,
) -> None:
    record.scenario = "restarts"
    record.transport, record.signer = "tcp", "softsign"
    rng = random.Random(f"restarts-{cometbft.tag}")
    solo = solo_chain(cometbft, make_node, procs, tmp_path)
    watcher = procs.add(StateWatcher(solo.kms.state_file).start())
    solo.wait(4)
    stalls: dict[str, float] = {}

    for i in range(KMS_CRASHES):
        time.sleep(rng.uniform(0.0, 0.6))  # somewhere inside a height
        h = solo.node.height()
        solo.kms.kill()
        solo.kms.start()
        stalls[f"kms-kill9-{i}"] = round(solo.wait(h + BLOCKS_BETWEEN, timeout=60), 1)

    h = solo.node.height()
    solo.node.stop()  # SIGTERM, clean node restart
    solo.node.start()
    stalls["node-restart"] = round(solo.wait(h + BLOCKS_BETWEEN, timeout=60), 1)

    time.sleep(rng.uniform(0.0, 0.6))
    h = solo.node.height()
    solo.node.kill()  # kill -9: the node replays its WAL and asks again for what it had
    solo.node.start()
    stalls["node-kill9"] = round(solo.wait(h + BLOCKS_BETWEEN, timeout=60), 1)

    last = solo.node.height() - 1
    watcher.stop()
    record.notes["seconds_to_resume"] = stalls
    record.notes["state_readings"] = len(watcher.seen)
    record.blocks = last
    assert watcher.regressions == [], f"state file went backwards: {watcher.regressions}"
    assert len(watcher.seen) > last, "the watcher saw too few states to mean anything"
    assert_chain_signed_by_us(solo, last)
    audit = solo.kms.audit_entries()
    assert conflicting_signatures(audit) == []
    final = solo.kms.read_state()
    assert final[0] >= last
