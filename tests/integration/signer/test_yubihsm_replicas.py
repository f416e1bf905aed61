"""YubiHsmSigner and ReplicaSet against simulated devices, through the real library over HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Literal

import pytest
from nacl.signing import SigningKey
from yubihsm.core import AuthSession
from yubihsm.utils import password_to_key

from kms.errors import (
    HsmAuthError,
    HsmConnectionError,
    HsmDeviceError,
    HsmKeyError,
    HsmTimeoutError,
    NoHealthyReplicaError,
)
from kms.signer import yubihsm_session as yh
from kms.signer.replicas import ReplicaSet
from kms.signer.softsign import SoftSigner
from kms.signer.yubihsm import YubiHsmDevice, YubiHsmSigner
from kms.signer.yubihsm_session import derive_credentials
from kms.sim.yubihsm import Cap, SimulatedHsm

from .conftest import KEY_ID, SEED, SIGNER_AUTH_ID, SIGNER_PASSWORD, SimFactory

PUB = bytes(SigningKey(SEED).verify_key)
INVALID_SESSION, INSUFFICIENT_PERMISSIONS = 0x03, 0x09


def signer(sim: SimulatedHsm, name: str, **opts: float) -> YubiHsmSigner:
    options = {"connect_timeout": 0.5, "request_timeout": 0.5, **opts}
    return YubiHsmSigner.connect(
        name, sim.url, KEY_ID, derive_credentials(SIGNER_AUTH_ID, SIGNER_PASSWORD), **options
    )


async def replica_set(
    sims: list[SimulatedHsm], policy: Literal["spread", "primary"] = "primary"
) -> ReplicaSet:
    rs = ReplicaSet(
        "chain-1",
        [signer(s, f"hsm-{chr(97 + i)}") for i, s in enumerate(sims)],
        policy=policy,
        probe_timeout=1.0,
    )
    await rs.open()
    return rs


def expected(msg: bytes) -> bytes:
    return bytes(SigningKey(SEED).sign(msg).signature)


# --- one device ----------------------------------------------------------------------


async def test_device_signature_equals_software_ed25519(sims: SimFactory) -> None:
    (sim,) = sims(1)
    s = signer(sim, "hsm-a")
    await s.open()
    try:
        assert s.public_key == PUB
        soft = SoftSigner(SEED)
        for msg in (b"", b"vote", bytes(range(256)) * 4):
            assert await s.sign(msg) == await soft.sign(msg)
    finally:
        await s.close()


async def test_open_refuses_missing_key_wrong_algorithm_or_missing_capability(
    sims: SimFactory,
) -> None:
    sim_missing, sim_nocap = sims(2)
    sim_missing.device.delete_object(KEY_ID, 3)
    sim_nocap.device.put_ed25519_seed(
        KEY_ID + 1, SEED, capabilities=Cap.EXPORTABLE_UNDER_WRAP, domains=1
    )
    s1 = signer(sim_missing, "hsm-a")
    with pytest.raises(HsmKeyError, match=r"hsm-a \(key 4\).*not found"):
        await s1.open()
    s2 = YubiHsmSigner.connect(
        "hsm-b", sim_nocap.url, KEY_ID + 1, derive_credentials(SIGNER_AUTH_ID, SIGNER_PASSWORD)
    )
    with pytest.raises(HsmKeyError, match="sign-eddsa"):
        await s2.open()
    await s1.close()
    await s2.close()


async def test_wrong_password_is_an_authentication_error_naming_the_device(
    sims: SimFactory,
) -> None:
    (sim,) = sims(1)
    s = YubiHsmSigner.connect("hsm-a", sim.url, KEY_ID, derive_credentials(2, "wrong"))
    with pytest.raises(HsmAuthError, match=r"hsm-a.*authentication failed"):
        await s.open()
    await s.close()


async def test_password_is_derived_once_however_often_sessions_are_rebuilt(
    sims: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = password_to_key

    def counting(password: str) -> tuple[bytes, bytes]:
        calls.append(password)
        return real(password)

    monkeypatch.setattr(yh, "password_to_key", counting)
    monkeypatch.setattr(yh, "_DERIVED", {})
    (sim,) = sims(1)
    sim.device.put_auth_key(3, "derive-once-pw", capabilities=Cap.SIGN_EDDSA)
    s = YubiHsmSigner.connect("hsm-a", sim.url, KEY_ID, derive_credentials(3, "derive-once-pw"))
    derive_credentials(3, "derive-once-pw")  # a second section with the same password
    await s.open()
    for _ in range(3):
        sim.device.expire_all_sessions()
        with pytest.raises(HsmDeviceError):
            await s.sign(b"m")
        assert await s.sign(b"m") == expected(b"m")
    assert s.sessions_created == 4
    assert calls == ["derive-once-pw"]
    await s.close()


async def test_every_library_call_runs_on_the_devices_own_single_thread(
    sims: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sim,) = sims(1)
    device = YubiHsmDevice("hsm-a", sim.url, derive_credentials(SIGNER_AUTH_ID, SIGNER_PASSWORD))
    threads: set[int] = set()
    real_call = device.session.call

    def recording(fn: Callable[[AuthSession], object], what: str = "") -> object:
        threads.add(threading.get_ident())
        return real_call(fn, what)

    monkeypatch.setattr(device.session, "call", recording)
    s1 = YubiHsmSigner(device, KEY_ID, name="hsm-a")
    await s1.open()
    await asyncio.gather(*(s1.sign(b"%d" % i) for i in range(20)), s1.ping())
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert device.session.sessions_created == 1
    await s1.close()


async def test_timeouts_are_short_never_the_librarys_600s_default(sims: SimFactory) -> None:
    (sim,) = sims(1)
    s = signer(sim, "hsm-a", request_timeout=0.3)
    await s.open()
    sim.faults.hang()
    t0 = time.monotonic()
    with pytest.raises(HsmTimeoutError, match="hsm-a"):
        await s.sign(b"m")
    assert time.monotonic() - t0 < 2.0
    sim.faults.release()
    assert await s.sign(b"m2") == expected(b"m2")
    await s.close()


async def test_idle_session_is_replaced_before_the_device_expires_it(sims: SimFactory) -> None:
    now = [1000.0]
    sim = SimulatedHsm(clock=lambda: now[0]).start()
    try:
        from .conftest import provision

        provision(sim)
        sim.device.put_ed25519_seed(KEY_ID, SEED, domains=1)
        s = YubiHsmSigner.connect(
            "hsm-a",
            sim.url,
            KEY_ID,
            derive_credentials(SIGNER_AUTH_ID, SIGNER_PASSWORD),
            clock=lambda: now[0],
        )
        await s.open()
        now[0] += 20  # keep-alive inside the idle limit keeps the same session
        await s.ping()
        now[0] += 20
        assert await s.sign(b"a") == expected(b"a")
        assert s.sessions_created == 1
        now[0] += 31  # idle past the device limit: replaced up front, no failed request
        assert await s.sign(b"b") == expected(b"b")
        assert s.sessions_created == 2
        await s.close()
    finally:
        sim.stop()


# --- replicas ----------------------------------------------------------------------------


async def test_every_replica_signs_identically(sims: SimFactory) -> None:
    reps = sims(3)
    rs = await replica_set(reps, policy="spread")
    try:
        msg = b"height 10 round 0 precommit"
        sigs = {await r.sign(msg) for r in rs.replicas}
        assert sigs == {expected(msg)}
        assert (await rs.sign(msg)) == expected(msg)
    finally:
        await rs.close()


FAULTS = {
    "listener down (connection refused)": lambda sim: sim.faults.listener_down(),
    "hang (timeout)": lambda sim: sim.faults.hang(),
    "device error": lambda sim: sim.faults.fail_next(
        1, INSUFFICIENT_PERMISSIONS, layer="inner", commands={0x6A}
    ),
    "bad response MAC": lambda sim: sim.faults.corrupt_next_mac(1),
    "expired session": lambda sim: sim.device.expire_all_sessions(),
    "HTTP 500 from the connector": lambda sim: sim.faults.http_error_next(1, status=500),
    "wrong signature in a valid envelope": lambda sim: sim.faults.corrupt_next_signature(1),
    "lost reply after signing": lambda sim: sim.faults.drop_next(1, after_execute=True),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_failed_replica_is_bypassed_within_deadline_and_returns_when_healthy(
    sims: SimFactory, fault: str
) -> None:
    reps = sims(2)
    rs = await replica_set(reps, policy="primary")
    try:
        FAULTS[fault](reps[0])
        t0 = time.monotonic()
        sig = await rs.sign_traced(b"vote-1", timeout=3.0)
        assert time.monotonic() - t0 < 1.5
        assert sig.signature == expected(b"vote-1")
        assert sig.by == "hsm-b"
        # a hang may be hedged (the same request also sent to hsm-b) before it times out;
        # the hung attempt then runs to its own timeout and marks hsm-a down
        assert rs.stats.failovers + rs.stats.hedges == 1
        for _ in range(30):
            if not rs.replica_health()["hsm-a"].healthy:
                break
            await asyncio.sleep(0.05)
        assert rs.replica_health()["hsm-a"].healthy is False
        # more requests keep flowing from the healthy replica
        for i in range(3):
            assert (await rs.sign_traced(b"v%d" % i, timeout=3.0)).by == "hsm-b"
        reps[0].faults.clear()
        reps[0].faults.listener_up()
        reps[0].faults.release()
        await rs.probe(0)
        assert rs.replica_health()["hsm-a"].healthy is True
        back = await rs.sign_traced(b"vote-2", timeout=3.0)
        assert back.by == "hsm-a" and back.signature == expected(b"vote-2")
    finally:
        reps[0].faults.release()
        await rs.close()


async def test_three_replicas_survive_two_failures(sims: SimFactory) -> None:
    reps = sims(3)
    rs = await replica_set(reps, policy="spread")
    try:
        reps[0].faults.listener_down()
        reps[1].faults.hang()
        sigs = await asyncio.gather(*(rs.sign_traced(b"m%d" % i, timeout=3.0) for i in range(6)))
        assert [s.signature for s in sigs] == [expected(b"m%d" % i) for i in range(6)]
        assert {s.by for s in sigs} == {"hsm-c"}
    finally:
        reps[1].faults.release()
        await rs.close()


async def test_all_replicas_down_gives_no_healthy_replica_error(sims: SimFactory) -> None:
    reps = sims(2)
    rs = await replica_set(reps)
    try:
        for s in reps:
            s.faults.listener_down()
        with pytest.raises(NoHealthyReplicaError, match=r"hsm-a.*hsm-b"):
            await rs.sign_traced(b"m", timeout=2.0)
    finally:
        await rs.close()


async def test_health_loop_keeps_replicas_alive_and_recovers_a_restarted_listener(
    sims: SimFactory,
) -> None:
    reps = sims(2)
    rs = ReplicaSet(
        "chain-1",
        [signer(s, f"hsm-{chr(97 + i)}") for i, s in enumerate(reps)],
        policy="primary",
        health_interval=0.1,
        down_probe_interval=0.05,
    )
    await rs.open()
    stop = asyncio.Event()
    task = asyncio.create_task(rs.run_health(stop))
    try:
        reps[0].faults.listener_down()
        for _ in range(40):
            await asyncio.sleep(0.05)
            if not rs.replica_health()["hsm-a"].healthy:
                break
        assert rs.replica_health()["hsm-a"].healthy is False
        reps[0].faults.listener_up()
        for _ in range(40):
            await asyncio.sleep(0.05)
            if rs.replica_health()["hsm-a"].healthy:
                break
        assert rs.replica_health()["hsm-a"].healthy is True
        assert (await rs.sign_traced(b"m")).by == "hsm-a"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await rs.close()


async def test_replicas_with_different_keys_are_refused_at_open(sims: SimFactory) -> None:
    reps = sims(2)
    reps[1].device.delete_object(KEY_ID, 3)
    reps[1].device.put_ed25519_seed(KEY_ID, bytes(32), domains=1)
    rs = ReplicaSet("chain-1", [signer(s, f"hsm-{chr(97 + i)}") for i, s in enumerate(reps)])
    from kms.errors import KeyMismatchError

    with pytest.raises(KeyMismatchError, match=r"hsm-a.*hsm-b"):
        await rs.open()


async def test_unreachable_replica_at_start_joins_later(sims: SimFactory) -> None:
    reps = sims(2)
    reps[1].faults.listener_down()
    rs = await replica_set(reps)
    try:
        assert rs.replica_health()["hsm-b"].healthy is False
        reps[1].faults.listener_up()
        await rs.probe(1)
        assert rs.replica_health()["hsm-b"].healthy is True
    finally:
        await rs.close()


async def test_connection_error_is_mapped_with_device_and_key(sims: SimFactory) -> None:
    (sim,) = sims(1)
    s = signer(sim, "hsm-a")
    await s.open()
    sim.faults.listener_down()
    with pytest.raises(HsmConnectionError, match=r"hsm-a \(key 4\)"):
        await s.sign(b"m")
    sim.faults.listener_up()
    await s.close()


# --- session hygiene -------------------------------------------------------------------


async def test_lost_reply_discards_the_session_so_the_next_request_succeeds(
    sims: SimFactory,
) -> None:
    (sim,) = sims(1)
    s = signer(sim, "hsm-a")
    await s.open()
    sim.faults.drop_next(1, after_execute=True)  # device signs, reply lost: MAC chain moved on
    with pytest.raises(HsmConnectionError):
        await s.sign(b"lost")
    assert await s.sign(b"next") == expected(b"next")
    assert s.sessions_created == 2
    await s.close()


async def test_requests_that_timed_out_in_the_queue_are_never_sent(sims: SimFactory) -> None:
    (sim,) = sims(1)
    s = signer(sim, "hsm-a", request_timeout=1.0)
    await s.open()
    signed_before = len(sim.device.signed)
    sim.faults.hang()
    results = await asyncio.gather(
        *(s.sign(b"q%d" % i, timeout=0.2) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, HsmTimeoutError) for r in results)
    sim.faults.release()
    # the hung call returns; the 3 queued ones must be skipped (asyncio cancels a queued
    # executor job on timeout; YubiHsmDevice.run also flags it for the race window)
    await asyncio.sleep(1.2)
    assert await s.sign(b"after") == expected(b"after")
    assert len(sim.device.signed) - signed_before <= 2  # the hung one (maybe) + "after"
    await s.close()


async def test_signature_that_does_not_verify_is_refused(sims: SimFactory) -> None:
    (sim,) = sims(1)
    s = signer(sim, "hsm-a")
    await s.open()
    sim.faults.corrupt_next_signature(1)
    with pytest.raises(HsmDeviceError, match="does not verify"):
        await s.sign(b"m")
    assert await s.sign(b"m") == expected(b"m")
    await s.close()


async def test_wrong_password_is_not_retried_in_a_loop(sims: SimFactory) -> None:
    (sim,) = sims(1)
    s = YubiHsmSigner.connect("hsm-a", sim.url, KEY_ID, derive_credentials(2, "wrong"))
    for _ in range(5):
        with pytest.raises(HsmAuthError):
            await s.open()
    # one half-open session on the device, not five
    assert len(sim.device.active_sessions()) == 1
    await s.close()


# --- under load at device speed ----------------------------------------------------------


async def test_concurrent_load_at_device_latency_survives_a_replica_dying_mid_stream(
    sims: SimFactory,
) -> None:
    reps = sims(3, latency_ms=110)
    rs = ReplicaSet(
        "chain-1",
        [signer(s, f"hsm-{chr(97 + i)}", request_timeout=1.0) for i, s in enumerate(reps)],
        policy="spread",
    )
    await rs.open()
    deadline = 5.0
    latencies: list[float] = []

    async def one(i: int) -> None:
        msg = b"load-%d" % i
        t0 = time.monotonic()
        sig = await rs.sign_traced(msg, timeout=deadline)
        latencies.append(time.monotonic() - t0)
        assert sig.signature == expected(msg)

    async def killer() -> None:
        await asyncio.sleep(0.5)
        reps[0].faults.listener_down()
        await asyncio.sleep(0.5)
        reps[1].faults.hang()

    try:
        await asyncio.gather(killer(), *(one(i) for i in range(30)))
        assert len(latencies) == 30
        assert max(latencies) < deadline
        assert rs.stats.failovers >= 1
        by = {r.name: r.signatures for r in rs.stats.replicas}
        assert by["hsm-c"] > 0 and sum(by.values()) == 30
    finally:
        reps[1].faults.release()
        await rs.close()


async def test_device_shared_by_several_chains_hangs_and_no_chain_misses_its_deadline(
    sims: SimFactory,
) -> None:
    reps = sims(2, latency_ms=110)
    seeds = [bytes([c + 1]) * 32 for c in range(3)]
    for sim in reps:
        for c, seed in enumerate(seeds):
            sim.device.put_ed25519_seed(20 + c, seed, domains=1)
    creds = derive_credentials(SIGNER_AUTH_ID, SIGNER_PASSWORD)
    devices = [
        YubiHsmDevice(f"hsm-{i}", s.url, creds, connect_timeout=0.5, request_timeout=1.5)
        for i, s in enumerate(reps)
    ]
    sets = [ReplicaSet(f"chain-{c}", [YubiHsmSigner(d, 20 + c) for d in devices]) for c in range(3)]
    for rs in sets:
        await rs.open()
    deadline = 4.0
    worst = 0.0

    async def chain_load(c: int) -> None:
        nonlocal worst
        key = SigningKey(seeds[c])
        for i in range(6):
            msg = b"c%d-%d" % (c, i)
            t0 = time.monotonic()
            sig = await sets[c].sign_traced(msg, timeout=deadline)
            worst = max(worst, time.monotonic() - t0)
            key.verify_key.verify(msg, sig.signature)

    async def hang_later() -> None:
        await asyncio.sleep(0.3)
        reps[0].faults.hang()

    try:
        await asyncio.gather(hang_later(), *(chain_load(c) for c in range(3) for _ in range(2)))
        assert worst < deadline
    finally:
        reps[0].faults.release()
        for rs in sets:
            await rs.close()


@pytest.mark.parametrize("fault", ["expired session", "lost reply after signing"])
async def test_single_device_recovers_within_the_same_request(sims: SimFactory, fault: str) -> None:
    (sim,) = sims(1)
    rs = await replica_set([sim])
    try:
        FAULTS[fault](sim)
        sig = await rs.sign_traced(b"only-device", timeout=3.0)
        assert sig.signature == expected(b"only-device")
    finally:
        await rs.close()
