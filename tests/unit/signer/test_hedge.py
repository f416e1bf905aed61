"""Hedged requests: the hedge-delay rule and the replica set racing a slow replica."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from nacl.signing import SigningKey

from kms.errors import NoHealthyReplicaError
from kms.signer.hedge import HedgePolicy, LatencyWindow, hedge_delay
from kms.signer.replicas import ReplicaSet

from .fakes import FakeReplica

SEED = bytes(range(32))
FAST = HedgePolicy(floor=0.05, ceiling=0.2, min_samples=2)


def expected_sig(msg: bytes) -> bytes:
    return bytes(SigningKey(SEED).sign(msg).signature)


def window(*samples: float, size: int = 64) -> LatencyWindow:
    w = LatencyWindow(size)
    for s in samples:
        w.add(s)
    return w


# --- the rule --------------------------------------------------------------------------


def test_unknown_replica_gets_the_ceiling() -> None:
    p = HedgePolicy(min_samples=8, ceiling=0.5)
    assert hedge_delay(p, window()) == 0.5
    assert hedge_delay(p, window(*[0.1] * 7)) == 0.5


def test_delay_is_multiplier_times_p99_within_bounds() -> None:
    p = HedgePolicy(multiplier=1.5, floor=0.05, ceiling=0.5, min_samples=8)
    # 199 samples at 100 ms and one at 300 ms: the nearest-rank p99 is 100 ms
    assert hedge_delay(p, window(*[0.1] * 199, 0.3, size=200)) == pytest.approx(0.15)
    # in a window of 64 the p99 is the slowest answer
    assert hedge_delay(p, window(*[0.1] * 63, 0.3)) == pytest.approx(0.45)
    assert hedge_delay(p, window(*[0.001] * 10)) == 0.05  # floor
    assert hedge_delay(p, window(*[0.9] * 10)) == 0.5  # ceiling


def test_window_forgets_old_latencies() -> None:
    w = LatencyWindow(4)
    for s in (1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1):
        w.add(s)
    assert w.p99() == 0.1 and len(w) == 4


@pytest.mark.parametrize(
    "make",
    [
        lambda: HedgePolicy(floor=0.0),
        lambda: HedgePolicy(floor=0.6, ceiling=0.5),
        lambda: HedgePolicy(multiplier=0),
        lambda: HedgePolicy(min_samples=0),
    ],
    ids=["floor-zero", "floor-above-ceiling", "multiplier-zero", "min-samples-zero"],
)
def test_nonsense_policies_are_refused(make: Callable[[], HedgePolicy]) -> None:
    with pytest.raises(ValueError):
        make()


# --- the race ---------------------------------------------------------------------------


async def warmed(reps: list[FakeReplica], policy: HedgePolicy = FAST) -> ReplicaSet:
    rs = ReplicaSet("chain-1", reps, policy="primary", hedge=policy)
    await rs.open()
    for r in reps:  # every replica has a latency history (primary sends all to the first)
        r.mode = "ok"
    for i in range(4):
        await rs.sign_traced(b"warm-%d" % i)
    # a loaded machine may have hedged a warm-up request: tests count from here
    rs._hedges = rs._hedge_wins = 0
    return rs


async def test_hung_replica_costs_one_hedge_delay_not_the_request_timeout() -> None:
    reps = [FakeReplica(f"hsm-{c}", SEED, latency=0.01, hang_timeout=1.5) for c in "abc"]
    rs = await warmed(reps)
    reps[0].mode = "hang"
    t0 = time.monotonic()
    sig = await rs.sign_traced(b"m", timeout=3.0)
    elapsed = time.monotonic() - t0
    assert sig.signature == expected_sig(b"m") and sig.by == "hsm-b"
    # hedge delay (floor 50 ms: 1.5 x ~10 ms) plus one latency, not the 1.5 s hang
    assert elapsed < 0.3
    assert (rs.stats.hedges, rs.stats.hedge_wins, rs.stats.failovers) == (1, 1, 0)
    # the slow twin is not cut off: it still counts on its replica and, when its own
    # timeout fires, marks the hung replica down
    assert rs.stats.replicas[0].outstanding == 1
    assert rs.replica_health()["hsm-a"].healthy
    await asyncio.sleep(1.6)
    assert rs.stats.replicas[0].outstanding == 0
    assert not rs.replica_health()["hsm-a"].healthy
    await rs.close()


async def test_without_hedging_a_hung_replica_costs_its_whole_timeout() -> None:
    # the control for the test above: the same set with hedging off waits the hang out
    reps = [FakeReplica(f"hsm-{c}", SEED, latency=0.01, hang_timeout=0.4) for c in "ab"]
    rs = await warmed(reps, HedgePolicy(enabled=False))
    reps[0].mode = "hang"
    t0 = time.monotonic()
    sig = await rs.sign_traced(b"m", timeout=3.0)
    assert sig.by == "hsm-b" and time.monotonic() - t0 >= 0.4
    assert rs.stats.hedges == 0 and rs.stats.failovers == 1
    await rs.close()


async def test_first_valid_answer_wins_and_a_bad_fast_answer_is_never_returned() -> None:
    reps = [FakeReplica(f"hsm-{c}", SEED, latency=0.01) for c in "ab"]
    rs = await warmed(reps)
    reps[0].latency = 0.1  # slow but right
    reps[1].mode = "garbage"  # the hedge answers first, with a wrong signature
    sig = await rs.sign_traced(b"m", timeout=2.0)
    assert sig.by == "hsm-a" and sig.signature == expected_sig(b"m")
    assert rs.stats.hedges == 1 and rs.stats.hedge_wins == 0
    assert not rs.replica_health()["hsm-b"].healthy  # a bad signature marks it down
    await rs.close()


async def test_hedges_go_only_to_healthy_replicas() -> None:
    reps = [FakeReplica(f"hsm-{c}", SEED, latency=0.01) for c in "ab"]
    rs = await warmed(reps)
    reps[1].mode = "refused"
    await rs.probe(1)  # b is down
    reps[1].mode = "ok"
    reps[0].latency = 0.15
    sig = await rs.sign_traced(b"m", timeout=2.0)
    assert sig.by == "hsm-a" and rs.stats.hedges == 0
    await rs.close()


async def test_a_slow_busy_replica_is_hedged_and_both_answers_agree() -> None:
    reps = [FakeReplica(f"hsm-{c}", SEED, latency=0.01) for c in "ab"]
    rs = await warmed(reps)
    reps[0].latency = 0.3  # slow, not hung: its own answer arrives after the hedge's
    sig = await rs.sign_traced(b"m", timeout=2.0)
    assert sig.by == "hsm-b"
    await asyncio.sleep(0.35)
    assert reps[0].signed[-1] == b"m"  # the slow twin finished: no session cut off
    assert rs.replica_health()["hsm-a"].healthy  # and slow is not broken
    await rs.close()


async def test_deadline_still_bounds_a_hedged_request() -> None:
    reps = [FakeReplica(f"hsm-{c}", SEED, latency=0.01) for c in "ab"]
    rs = await warmed(reps)
    for r in reps:
        r.mode = "hang"
    t0 = time.monotonic()
    with pytest.raises(NoHealthyReplicaError):
        await rs.sign_traced(b"m", timeout=0.3)
    assert time.monotonic() - t0 < 0.5
    assert rs.stats.hedges == 1
    await asyncio.sleep(0.05)
    assert all(r.outstanding == 0 for r in rs.stats.replicas)
    await rs.close()


async def test_cancelled_request_cancels_its_attempts() -> None:
    reps = [FakeReplica(f"hsm-{c}", SEED, latency=0.01) for c in "ab"]
    rs = await warmed(reps)
    reps[0].mode = "hang"
    task = asyncio.ensure_future(rs.sign_traced(b"m", timeout=2.0))
    await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert all(r.outstanding == 0 for r in rs.stats.replicas)
    await rs.close()
