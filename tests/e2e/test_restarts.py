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

import pytest

from .kmsproc import StateWatcher, conflicting_signatures
from .scenarios import Rig, solo_chain
from .test_single_validator import assert_chain_signed_by_us

pytestmark = pytest.mark.e2e

KMS_DOWNTIMES = (0.0, 0.0, 2.0)  # seconds between kill -9 and the restart
BLOCKS_BETWEEN = 3


def test_kms_kill9_and_node_restarts_keep_the_chain_going(rig: Rig) -> None:
    rig.describe("restarts", "tcp", "softsign")
    rng = random.Random(f"restarts-{rig.cometbft.tag}")
    solo = solo_chain(rig)
    watcher = rig.procs.add(StateWatcher(solo.kms.state_file).start())
    solo.wait(4)
    stalls: dict[str, float] = {}

    def event(name: str, action: Callable[[], None]) -> None:
        """Run `action`; record seconds until the next block; then let a few blocks pass."""
        h = solo.node.height()
        t0 = time.monotonic()
        action()
        solo.wait(h + 1, timeout=60)
        stalls[name] = round(time.monotonic() - t0, 2)
        solo.wait(h + BLOCKS_BETWEEN, timeout=60)

    def kms_crash(downtime: float) -> Callable[[], None]:
        def crash() -> None:
            solo.kms.kill()  # kill -9
            time.sleep(downtime)
            solo.kms.start()

        return crash

    def node_restart(kill: bool) -> Callable[[], None]:
        def restart() -> None:
            # kill -9: the node replays its WAL and asks again for what it had signed
            if kill:
                solo.node.kill()
            else:
                solo.node.stop()
            solo.node.start()

        return restart

    for i, downtime in enumerate(KMS_DOWNTIMES):
        time.sleep(rng.uniform(0.0, 0.6))  # somewhere inside a height
        event(f"kms-kill9-down-{downtime}s-{i}", kms_crash(downtime))
    event("node-restart", node_restart(kill=False))
    time.sleep(rng.uniform(0.0, 0.6))
    event("node-kill9", node_restart(kill=True))

    last = solo.node.height() - 1
    watcher.stop()
    rig.record.notes["seconds_to_next_block"] = stalls
    rig.record.notes["kms_starts"] = solo.kms.starts
    rig.record.notes["state_readings"] = len(watcher.seen)
    rig.record.blocks = last
    assert watcher.regressions == [], f"state file went backwards: {watcher.regressions}"
    assert len(watcher.seen) > last, "the watcher saw too few states to mean anything"
    assert_chain_signed_by_us(solo, last)
    audit = solo.kms.audit_entries()
    assert conflicting_signatures(audit) == []
    final = solo.kms.read_state()
    assert final[0] >= last
