"""HSM failover: two simulated YubiHSM2 replicas at device-like latency (110 ms/signature).

Three phases in one run, the chain must keep committing through all of them:
1. hang: replica A is frozen (SIGSTOP: its socket accepts but never answers, like a
   wedged device or a network partition), so kms must time out and move to B;
2. recovery: A is thawed (SIGCONT), kms's health probes must bring it back into use;
3. crash: replica B is killed (-9: connection refused), everything goes to A.
For each failure we report how many heights were delayed: committed in a round > 0, or
with a wall-clock interval between heights more than twice the median before the first
failure.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections import Counter

import pytest

from .cometbft import HeightClock
from .kmsproc import HsmSim
from .scenarios import Rig, Solo, commit_rounds, solo_chain
from .test_single_validator import assert_chain_signed_by_us

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # ~20-25 s per line

LATENCY_MS = 110
WARMUP = 8  # heights before the first failure
PHASE = 10  # heights per phase
MAX_DELAYED = 3  # "a few": more means failover is too slow


def signers_since(solo: Solo, start: int) -> Counter[str]:
    return Counter(
        str(e.get("replica")) for e in solo.kms.log_events()[start:] if e.get("msg") == "signed"
    )


def replica_name(sim: HsmSim) -> str:
    return f"127.0.0.1:{sim.port}"


def test_chain_continues_through_hsm_replica_hang_recovery_and_crash(rig: Rig) -> None:
    rig.describe("hsm-failover", "tcp", "hsm-sim x2")
    solo = solo_chain(rig, hsms=2, hsm_latency_ms=LATENCY_MS)
    a, b = solo.hsms
    clock = rig.procs.add(HeightClock(solo.node).start())
    solo.wait(WARMUP, timeout=90)

    # 1. A hangs
    hang_at = solo.node.height()
    mark = len(solo.kms.log_events())
    a.send_signal(signal.SIGSTOP)
    solo.wait(hang_at + PHASE, timeout=120)
    during_hang = signers_since(solo, mark)

    # 2. A comes back
    a.send_signal(signal.SIGCONT)
    mark = len(solo.kms.log_events())
    t0 = time.monotonic()
    while signers_since(solo, mark)[replica_name(a)] == 0:
        assert time.monotonic() - t0 < 30, f"replica A never came back: {signers_since(solo, mark)}"
        solo.kms.assert_alive()
        time.sleep(0.3)
    back_after = time.monotonic() - t0

    # 3. B crashes
    crash_at = solo.node.height()
    mark = len(solo.kms.log_events())
    b.kill()
    solo.wait(crash_at + PHASE + 1, timeout=120)
    during_crash = signers_since(solo, mark)
    last = solo.node.height() - 1

    clock.stop()
    intervals = clock.intervals()  # wall clock, polled every 50 ms
    rounds = commit_rounds(solo.node, list(range(hang_at + 1, last + 1)))
    median = statistics.median(intervals[h] for h in range(3, hang_at + 1) if h in intervals)

    def delayed(heights: range) -> list[int]:
        return [h for h in heights if rounds[h] > 0 or intervals.get(h, 0) > 2 * median]

    delayed_hang = delayed(range(hang_at + 1, hang_at + PHASE + 1))
    delayed_crash = delayed(range(crash_at + 1, crash_at + PHASE + 1))
    rig.record.blocks = last
    rig.record.notes.update(
        {
            "latency_ms": LATENCY_MS,
            "median_interval_s": round(median, 3),
            "hang_at_height": hang_at,
            "delayed_heights_hang": delayed_hang,
            "worst_interval_hang_s": round(
                max(intervals.get(h, 0) for h in range(hang_at + 1, hang_at + PHASE + 1)), 3
            ),
            "seconds_until_recovered_replica_signs": round(back_after, 1),
            "crash_at_height": crash_at,
            "delayed_heights_crash": delayed_crash,
            "worst_interval_crash_s": round(
                max(intervals.get(h, 0) for h in range(crash_at + 1, crash_at + PHASE + 1)), 3
            ),
            "rounds_above_0": {h: r for h, r in rounds.items() if r},
        }
    )
    assert_chain_signed_by_us(solo, last)
    # While A hung, B signed everything (A may have taken the one request in flight).
    assert during_hang[replica_name(b)] >= 2 * PHASE, during_hang
    assert during_hang[replica_name(a)] <= 1, during_hang
    # After B crashed, A signed everything.
    assert during_crash[replica_name(a)] >= 2 * PHASE, during_crash
    assert during_crash[replica_name(b)] <= 1, during_crash
    assert len(delayed_hang) <= MAX_DELAYED, rig.record.notes
    assert len(delayed_crash) <= MAX_DELAYED, rig.record.notes
