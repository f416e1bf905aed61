"""Hedged requests through the real `yubihsm` library against simulated devices over HTTP.

One replica hangs (the simulator's fault injection: it stops answering while
holding the device); every request must still get its signature, within about
one hedge delay plus one device latency, and none may fail.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from nacl.signing import SigningKey

from kms.signer.hedge import HedgePolicy
from kms.signer.replicas import ReplicaSet
from kms.signer.yubihsm import YubiHsmDevice, YubiHsmSigner
from kms.signer.yubihsm_session import derive_credentials
from kms.sim.yubihsm import SimulatedHsm

from .conftest import KEY_ID, SEED, SIGNER_AUTH_ID, SIGNER_PASSWORD, SimFactory

LATENCY_MS = 40
REQUEST_TIMEOUT = 1.0
# a short ceiling and few samples so the test warms up quickly; the rule is the default one
POLICY = HedgePolicy(min_samples=3, ceiling=0.3)


def expected(msg: bytes) -> bytes:
    return bytes(SigningKey(SEED).sign(msg).signature)


async def hedged_set(
    sims: SimFactory, policy: Literal["spread", "primary"]
) -> tuple[ReplicaSet, list[SimulatedHsm]]:
    reps = sims(3, latency_ms=LATENCY_MS)
    members = [
        YubiHsmSigner.connect(
            f"hsm-{chr(97 + i)}",
            sim.url,
            KEY_ID,
            derive_credentials(SIGNER_AUTH_ID, SIGNER_PASSWORD),
            connect_timeout=0.5,
            request_timeout=REQUEST_TIMEOUT,
        )
        for i, sim in enumerate(reps)
    ]
    rs = ReplicaSet(
        "chain-1",
        members,
        policy=policy,
        hedge=POLICY,
        probe_timeout=1.0,
    )
    await rs.open()
    for i in range(9):  # a latency history for every replica
        await rs.sign_traced(b"warm-%d" % i, timeout=3.0)
    return rs, reps


async def test_hung_primary_costs_about_one_device_latency_more(sims: SimFactory) -> None:
    rs, reps = await hedged_set(sims, "primary")
    reps[0].faults.hang()
    try:
        latencies = []
        for i in range(3):
            t0 = time.monotonic()
            sig = await rs.sign_traced(b"m-%d" % i, timeout=4.0)
            latencies.append(time.monotonic() - t0)
            assert sig.signature == expected(b"m-%d" % i)
            assert sig.by != "hsm-a"
            if i == 0:  # hedged: the hung replica may still sign it (for the audit log)
                assert sig.also_sent_to == ("hsm-a",)
        # the first request waits one hedge delay (1.5 x ~45 ms, floor 50 ms) plus one
        # device latency; the request timeout (1 s) is never waited out
        assert latencies[0] < 0.35, latencies
        assert max(latencies) < REQUEST_TIMEOUT / 2, latencies
        assert rs.stats.hedges >= 1 and rs.stats.exhausted == 0
        # the hung attempt was left to end on its own: its timeout marks the replica down
        await asyncio.sleep(REQUEST_TIMEOUT + 0.3)
        assert not rs.replica_health()["hsm-a"].healthy
    finally:
        reps[0].faults.release()
    # after the hang it comes back with a working session
    await rs.probe(0)
    assert rs.replica_health()["hsm-a"].healthy
    assert await rs.replicas[0].sign(b"after") == expected(b"after")
    await rs.close()


async def test_no_request_fails_when_a_replica_hangs_under_load(sims: SimFactory) -> None:
    rs, reps = await hedged_set(sims, "spread")
    latencies: list[float] = []

    async def one(i: int) -> None:
        await asyncio.sleep(0.02 * i)  # a steady stream, a few in flight at a time
        msg = b"load-%d" % i
        t0 = time.monotonic()
        sig = await rs.sign_traced(msg, timeout=4.0)
        latencies.append(time.monotonic() - t0)
        assert sig.signature == expected(msg)

    async def hang_later() -> None:
        await asyncio.sleep(0.2)
        reps[1].faults.hang()

    try:
        await asyncio.gather(hang_later(), *(one(i) for i in range(40)))
    finally:
        reps[1].faults.release()
    assert len(latencies) == 40 and rs.stats.exhausted == 0
    assert rs.stats.hedges >= 1
    # without hedging, the requests caught on the hung device would wait out the
    # request timeout (1 s) before failing over
    assert max(latencies) < 0.6, sorted(latencies)[-5:]
    await rs.close()


async def test_two_messages_are_signed_at_once_on_two_devices(sims: SimFactory) -> None:
    rs, _ = await hedged_set(sims, "primary")  # even under primary: one message per device
    assert rs.parallel_capacity == 3
    t0 = time.monotonic()
    vote, ext = await asyncio.gather(*rs.start_signing([b"vote", b"extension"], timeout=3.0))
    elapsed = time.monotonic() - t0
    assert vote.signature == expected(b"vote") and ext.signature == expected(b"extension")
    assert vote.by != ext.by
    assert elapsed < 1.7 * LATENCY_MS / 1000, elapsed  # one device latency, not two
    await rs.close()


async def test_devices_busy_with_other_chains_are_not_hedged(sims: SimFactory) -> None:
    # 6 chains share 2 devices, one request in flight per chain: every request queues
    # behind others for longer than a hedge delay, but the devices keep answering, so
    # nothing is stalled and nothing is sent twice (hedging here would halve throughput)
    reps = sims(2, latency_ms=LATENCY_MS)
    creds = derive_credentials(SIGNER_AUTH_ID, SIGNER_PASSWORD)
    devices = [
        YubiHsmDevice(f"hsm-{c}", sim.url, creds, request_timeout=REQUEST_TIMEOUT)
        for c, sim in zip("ab", reps, strict=True)
    ]
    sets = [
        ReplicaSet(f"chain-{i}", [YubiHsmSigner(d, KEY_ID) for d in devices], hedge=POLICY)
        for i in range(6)
    ]
    for rs in sets:
        await rs.open()

    async def chain(rs: ReplicaSet, n: int) -> None:
        for j in range(n):
            msg = b"%s-%d" % (rs.name.encode(), j)
            assert (await rs.sign_traced(msg, timeout=4.0)).signature == expected(msg)

    await asyncio.gather(*(chain(rs, 5) for rs in sets))  # warm-up: latency histories
    await asyncio.gather(*(chain(rs, 12) for rs in sets))
    signatures = sum(r.signatures for rs in sets for r in rs.stats.replicas)
    hedges = sum(rs.stats.hedges for rs in sets)
    # (a few under a loaded test machine's scheduling jitter; were a device's progress
    # judged by one chain's answers against the device's own service time, about 40 %
    # of these requests would be hedged)
    assert signatures >= 6 * 17 and hedges <= 0.1 * signatures, (hedges, signatures)
    for rs in sets:
        await rs.close()
