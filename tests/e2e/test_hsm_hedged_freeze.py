"""Three HSM replicas at device latency, one frozen for 10 s: the validator misses no height.

With vote extensions (v0.38+, v1) a precommit needs two signatures. Before hedged
requests and parallel extension signing, a frozen replica cost the request caught
on it the whole HSM request timeout, and the precommit two device latencies, and the
validator missed 2-3 heights. Now a stalled replica's request also goes to another
replica after its hedge delay, and the vote and its extension are signed at once on
two replicas: every height must commit in round 0, with no interval between heights
more than twice the median before the freeze.
"""

from __future__ import annotations

import signal
import statistics
import time

import pytest

from .cometbft import HeightClock
from .scenarios import Rig, commit_rounds, solo_chain
from .test_single_validator import assert_chain_signed_by_us

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.vote_extensions]

LATENCY_MS = 110
ENABLE_HEIGHT = 2
WARMUP = 10  # heights before the freeze: every replica has a latency history
FREEZE_S = 10.0


def test_one_of_three_replicas_frozen_10s_costs_no_height(rig: Rig) -> None:
    rig.describe("hsm-hedged-freeze", "tcp", "hsm-sim x3", extensions=True)
    solo = solo_chain(
        rig,
        hsms=3,
        hsm_latency_ms=LATENCY_MS,
        vote_extensions_height=ENABLE_HEIGHT,
    )
    clock = rig.procs.add(HeightClock(solo.node).start())
    solo.wait(WARMUP, timeout=120)

    frozen = solo.hsms[0]
    freeze_at = solo.node.height()
    frozen.send_signal(signal.SIGSTOP)
    try:
        time.sleep(FREEZE_S)
        solo.kms.assert_alive()
    finally:
        frozen.send_signal(signal.SIGCONT)
    thawed_at = solo.node.height()
    solo.wait(thawed_at + 3, timeout=60)
    last = solo.node.height() - 1

    clock.stop()
    intervals = clock.intervals()
    heights = range(freeze_at + 1, thawed_at + 2)
    rounds = commit_rounds(solo.node, list(heights))
    median = statistics.median(intervals[h] for h in range(3, freeze_at + 1) if h in intervals)
    delayed = [h for h in heights if rounds[h] > 0 or intervals.get(h, 0) > 2 * median]
    rig.record.blocks = last
    rig.record.notes.update(
        {
            "latency_ms": LATENCY_MS,
            "freeze_s": FREEZE_S,
            "freeze_at_height": freeze_at,
            "heights_during_freeze": thawed_at - freeze_at,
            "median_interval_s": round(median, 3),
            "worst_interval_s": round(max(intervals.get(h, 0) for h in heights), 3),
            "delayed_heights": delayed,
        }
    )
    assert_chain_signed_by_us(solo, last)
    assert thawed_at - freeze_at >= 3, rig.record.notes  # the chain kept going meanwhile
    assert not delayed, rig.record.notes
