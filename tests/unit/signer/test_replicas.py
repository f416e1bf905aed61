"""ReplicaSet: selection policy, failover, deadlines, health recovery, key agreement."""

from __future__ import annotations

import asyncio
import time

import pytest
from nacl.signing import SigningKey

from kms.errors import KeyMismatchError, NoHealthyReplicaError
from kms.signer.replica_policy import ReplicaState, ReplicaView, choose_replica
from kms.signer.replicas import ReplicaSet

from .fakes import FakeReplica

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
PUB = bytes(SigningKey(SEED).verify_key)


def make(n: int, *, latency: float = 0.0) -> list[FakeReplica]:
    return [FakeReplica(f"hsm-{chr(97 + i)}", SEED, latency=latency) for i in range(n)]


def expected_sig(msg: bytes) -> bytes:
    return bytes(SigningKey(SEED).sign(msg).signature)


# --- pure selection ------------------------------------------------------------------


def v(i: int, state: ReplicaState = "up", out: int = 0, assigned: int = 0) -> ReplicaView:
    return ReplicaView(i, state, out, assigned)


def test_spread_picks_least_outstanding_healthy_replica() -> None:
    views = [v(0, out=3), v(1, out=1), v(2, out=2)]
    assert choose_replica(views, "spread") == 1


def test_spread_breaks_ties_by_fewest_assigned_then_config_order() -> None:
    assert choose_replica([v(0, assigned=5), v(1, assigned=2), v(2, assigned=2)], "spread") == 1
    assert choose_replica([v(0), v(1), v(2)], "spread") == 0


def test_primary_picks_first_healthy_in_config_order_regardless_of_load() -> None:
    views = [v(0, "down"), v(1, out=9), v(2)]
    assert choose_replica(views, "primary") == 1


def test_down_replicas_are_only_a_last_resort_and_mismatched_never() -> None:
    views = [v(0, "down"), v(1, "mismatch"), v(2, out=50)]
    assert choose_replica(views, "spread") == 2
    assert choose_replica(views, "spread", frozenset({2})) == 0
    assert choose_replica(views, "spread", frozenset({0, 2})) is None


# --- open ------------------------------------------------------------------------------


async def test_open_refuses_replicas_with_different_keys_and_names_them() -> None:
    reps = make(3)
    reps[2].set_key(OTHER_SEED)
    rs = ReplicaSet("chain-1", reps)
    with pytest.raises(KeyMismatchError) as info:
        await rs.open()
    assert "hsm-a" in str(info.value) and "hsm-c" in str(info.value)


async def test_unreachable_replica_at_start_is_marked_down_not_fatal() -> None:
    reps = make(2)
    reps[1].open_mode = "refused"
    rs = ReplicaSet("chain-1", reps)
    await rs.open()
    assert rs.public_key == PUB
    assert rs.replica_health()["hsm-b"].healthy is False
    assert rs.health().healthy is True


async def test_start_needs_at_least_one_reachable_replica() -> None:
    reps = make(2)
    for r in reps:
        r.open_mode = "refused"
    with pytest.raises(NoHealthyReplicaError):
        await ReplicaSet("chain-1", reps).open()


# --- failover --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["refused", "device", "garbage"])
async def test_failed_replica_is_marked_down_and_same_message_goes_to_next(mode: str) -> None:
    reps = make(3)
    rs = ReplicaSet("chain-1", reps, policy="primary")
    await rs.open()
    reps[0].mode = mode
    sig = await rs.sign_traced(b"vote-1", timeout=1.0)
    assert sig.signature == expected_sig(b"vote-1")
    assert sig.by == "hsm-b"
    assert reps[1].signed == [b"vote-1"]
    assert rs.replica_health()["hsm-a"].healthy is False
    assert rs.stats.failovers == 1
    # the next request skips the failed replica straight away
    sig2 = await rs.sign_traced(b"vote-2", timeout=1.0)
    assert sig2.by == "hsm-b"
    assert rs.stats.failovers == 1


async def test_failover_order_follows_config_order_under_primary() -> None:
    reps = make(3)
    rs = ReplicaSet("chain-1", reps, policy="primary")
    await rs.open()
    reps[0].mode = "refused"
    reps[1].mode = "device"
    sig = await rs.sign_traced(b"m", timeout=1.0)
    assert sig.by == "hsm-c"
    assert rs.stats.failovers == 2


async def test_hung_replica_costs_one_attempt_timeout_then_next_replica_signs() -> None:
    reps = make(2)
    rs = ReplicaSet("chain-1", reps, policy="primary", attempt_timeout=0.2)
    await rs.open()
    reps[0].mode = "hang"
    t0 = time.monotonic()
    sig = await rs.sign_traced(b"m", timeout=2.0)
    elapsed = time.monotonic() - t0
    assert sig.by == "hsm-b"
    assert 0.15 <= elapsed < 0.6
    assert rs.replica_health()["hsm-a"].healthy is False


async def test_request_deadline_is_respected_when_all_replicas_hang() -> None:
    reps = make(3)
    rs = ReplicaSet("chain-1", reps, attempt_timeout=5.0)
    await rs.open()
    for r in reps:
        r.mode = "hang"
    t0 = time.monotonic()
    with pytest.raises(NoHealthyReplicaError):
        await rs.sign_traced(b"m", timeout=0.3)
    assert time.monotonic() - t0 < 0.6
    assert rs.stats.exhausted == 1


async def test_all_replicas_failing_raises_no_healthy_replica_with_reasons() -> None:
    reps = make(2)
    rs = ReplicaSet("chain-1", reps)
    await rs.open()
    for r in reps:
        r.mode = "refused"
    with pytest.raises(NoHealthyReplicaError) as info:
        await rs.sign_traced(b"m", timeout=1.0)
    assert "hsm-a" in str(info.value) and "hsm-b" in str(info.value)


async def test_down_replica_is_tried_as_last_resort_when_it_recovered_before_probe() -> None:
    reps = make(2)
    rs = ReplicaSet("chain-1", reps, policy="primary")
    await rs.open()
    reps[0].mode = "refused"
    await rs.sign_traced(b"m1")  # a down, b signs
    reps[0].mode = "ok"
    reps[1].mode = "refused"
    sig = await rs.sign_traced(b"m2")
    assert sig.by == "hsm-a"


async def test_replica_returning_wrong_signature_is_never_trusted() -> None:
    reps = make(1)
    rs = ReplicaSet("chain-1", reps)
    await rs.open()
    reps[0].mode = "garbage"
    with pytest.raises(NoHealthyReplicaError):
        await rs.sign_traced(b"m", timeout=1.0)


# --- spread ---------------------------------------------------------------------------


async def test_spread_runs_replicas_in_parallel_for_n_times_throughput() -> None:
    latency = 0.05
    reps = make(3, latency=latency)
    rs = ReplicaSet("chain-1", reps, policy="spread")
    await rs.open()
    t0 = time.monotonic()
    sigs = await asyncio.gather(*(rs.sign_traced(b"m%d" % i) for i in range(30)))
    elapsed = time.monotonic() - t0
    counts = {r.name: len(r.signed) for r in reps}
    assert counts == {"hsm-a": 10, "hsm-b": 10, "hsm-c": 10}
    assert all(s.signature == expected_sig(b"m%d" % i) for i, s in enumerate(sigs))
    # fakes do not serialise, so check load balance through the outstanding counts
    assert max(r.max_in_flight for r in reps) == 10
    assert elapsed < 30 * latency


async def test_spread_rotates_sequential_requests_across_replicas() -> None:
    reps = make(3)
    rs = ReplicaSet("chain-1", reps, policy="spread")
    await rs.open()
    for i in range(6):
        await rs.sign_traced(b"%d" % i)
    assert [len(r.signed) for r in reps] == [2, 2, 2]


async def test_primary_sends_everything_to_first_healthy_replica() -> None:
    reps = make(3)
    rs = ReplicaSet("chain-1", reps, policy="primary")
    await rs.open()
    await asyncio.gather(*(rs.sign_traced(b"%d" % i) for i in range(5)))
    assert [len(r.signed) for r in reps] == [5, 0, 0]


# --- health ---------------------------------------------------------------------------


async def test_health_check_brings_a_recovered_replica_back() -> None:
    clock = [0.0]
    reps = make(2)
    rs = ReplicaSet(
        "chain-1",
        reps,
        policy="primary",
        health_interval=10,
        down_probe_interval=1,
        clock=lambda: clock[0],
    )
    await rs.open()
    reps[0].mode = "refused"
    assert (await rs.sign_traced(b"m")).by == "hsm-b"
    reps[0].mode = "ok"
    clock[0] += 0.5
    await rs.check_health()  # not yet due
    assert rs.replica_health()["hsm-a"].healthy is False
    clock[0] += 0.6
    await rs.check_health()
    assert rs.replica_health()["hsm-a"].healthy is True
    assert (await rs.sign_traced(b"m2")).by == "hsm-a"


async def test_health_check_pings_up_replicas_every_interval_and_marks_failures_down() -> None:
    clock = [0.0]
    reps = make(2)
    rs = ReplicaSet("chain-1", reps, health_interval=10, clock=lambda: clock[0])
    await rs.open()
    await rs.check_health()
    assert [r.pings for r in reps] == [0, 0]
    clock[0] = 10.0
    reps[1].mode = "refused"
    await rs.check_health()
    assert [r.pings for r in reps] == [1, 1]
    assert rs.replica_health()["hsm-b"].healthy is False


async def test_replica_coming_back_with_another_key_is_excluded_for_good() -> None:
    clock = [0.0]
    reps = make(2)
    rs = ReplicaSet("chain-1", reps, policy="primary", clock=lambda: clock[0])
    await rs.open()
    reps[0].mode = "refused"
    await rs.sign_traced(b"m")
    reps[0].mode = "ok"
    reps[0].set_key(OTHER_SEED)
    clock[0] += 2
    await rs.check_health()
    assert rs.stats.replicas[0].state == "mismatch"
    reps[1].mode = "refused"
    with pytest.raises(NoHealthyReplicaError):
        await rs.sign_traced(b"m2", timeout=0.5)
    assert reps[0].signed == []


async def test_run_health_loop_recovers_replica_and_stops_on_event() -> None:
    reps = make(2)
    rs = ReplicaSet("chain-1", reps, health_interval=0.05, down_probe_interval=0.02)
    await rs.open()
    reps[0].mode = "refused"
    stop = asyncio.Event()
    task = asyncio.create_task(rs.run_health(stop))
    await asyncio.sleep(0.1)
    assert rs.replica_health()["hsm-a"].healthy is False
    reps[0].mode = "ok"
    await asyncio.sleep(0.1)
    assert rs.replica_health()["hsm-a"].healthy is True
    assert reps[1].pings >= 2
    stop.set()
    await asyncio.wait_for(task, 1.0)


async def test_hung_probe_is_bounded_by_probe_timeout() -> None:
    reps = make(2)
    rs = ReplicaSet("chain-1", reps, probe_timeout=0.1, health_interval=0)
    await rs.open()
    reps[0].mode = "hang"
    t0 = time.monotonic()
    await rs.check_health()
    assert time.monotonic() - t0 < 0.5
    assert rs.replica_health()["hsm-a"].healthy is False


async def test_requests_queued_on_a_replica_that_fails_move_on_at_once() -> None:
    reps = [
        FakeReplica("hsm-a", SEED, serial=True, hang_timeout=0.3),
        FakeReplica("hsm-b", SEED, serial=True, latency=0.01),
    ]
    rs = ReplicaSet("chain-1", reps, policy="primary")
    await rs.open()
    reps[0].mode = "hang"
    t0 = time.monotonic()
    sigs = await asyncio.gather(*(rs.sign_traced(b"m%d" % i, timeout=5.0) for i in range(5)))
    elapsed = time.monotonic() - t0
    assert {s.by for s in sigs} == {"hsm-b"}
    # one device timeout, not five queued ones in a row
    assert elapsed < 0.3 + 0.3
    assert rs.stats.replicas[0].errors == 1


async def test_busy_but_healthy_replica_is_not_marked_down_for_queueing() -> None:
    reps = [FakeReplica("hsm-a", SEED, serial=True, latency=0.05)]
    rs = ReplicaSet("chain-1", reps)
    await rs.open()
    # 20 queued x 50 ms = 1 s of queueing, well inside the 3 s deadline
    sigs = await asyncio.gather(*(rs.sign_traced(b"m%d" % i, timeout=3.0) for i in range(20)))
    assert len(sigs) == 20
    assert rs.replica_health()["hsm-a"].healthy is True
    assert rs.stats.failovers == 0


async def test_signing_before_open_is_refused() -> None:
    from kms.errors import SignerError

    with pytest.raises(SignerError, match="before open"):
        await ReplicaSet("chain-1", make(1)).sign_traced(b"m")


async def test_single_replica_gets_a_second_try_after_a_transient_failure() -> None:
    reps = make(1)
    rs = ReplicaSet("chain-1", reps)
    await rs.open()
    reps[0].fail_next = 1
    sig = await rs.sign_traced(b"m", timeout=1.0)
    assert sig.signature == expected_sig(b"m")
    reps[0].fail_next = 2  # a second failure is final: no endless retry loop
    with pytest.raises(NoHealthyReplicaError):
        await rs.sign_traced(b"m2", timeout=1.0)


async def test_every_replica_failing_once_gets_one_more_round() -> None:
    reps = make(2)
    rs = ReplicaSet("chain-1", reps, policy="primary")
    await rs.open()
    reps[0].fail_next = 1
    reps[1].fail_next = 1
    sig = await rs.sign_traced(b"m", timeout=1.0)
    assert sig.by == "hsm-a"
    assert rs.stats.failovers == 2


class RecordingObserver:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def hsm_request(self, replica: str, latency_s: float, ok: bool) -> None:
        self.events.append(("request", replica, str(ok)))

    def hsm_health(self, replica: str, healthy: bool) -> None:
        self.events.append(("health", replica, str(healthy)))

    def failover(self, chain: str, from_replica: str, to_replica: str) -> None:
        self.events.append(("failover", from_replica, to_replica))

    def hedge(self, chain: str, slow_replica: str, to_replica: str) -> None:
        self.events.append(("hedge", slow_replica, to_replica))


async def test_an_observer_set_after_construction_sees_health_and_failover() -> None:
    # the supervisor sets `observer` on a built set: the replica pool must report to it
    reps = make(2)
    rs = ReplicaSet("c", reps, policy="primary")
    seen = RecordingObserver()
    rs.observer = seen
    await rs.open()
    reps[0].mode = "refused"
    await rs.sign(b"m")
    reps[0].mode = "ok"
    rs.pool.replicas[0].last_probe = float("-inf")
    await rs.check_health()
    assert seen.events == [
        ("health", "hsm-a", "True"),
        ("health", "hsm-b", "True"),
        ("request", "hsm-a", "False"),
        ("health", "hsm-a", "False"),
        ("failover", "hsm-a", "hsm-b"),
        ("request", "hsm-b", "True"),
        ("health", "hsm-a", "True"),
    ]
    await rs.close()
