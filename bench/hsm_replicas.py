"""HSM-bound signing capacity with 1..N YubiHSM2 replicas, and failover time.

Runs simulated YubiHSM2s (`kms.sim.yubihsm`, default 110 ms per Ed25519
signature, like a real device) reached through the real `yubihsm` library over
HTTP, with the production signer stack (YubiHsmDevice / YubiHsmSigner /
ReplicaSet). Several chains, each with its own key on every device, sign in
closed loops at once.

Reports, per replica count: signatures/s and p50/p99 latency; then, with two
replicas under policy `primary` and a sequential stream of requests, the time
from a replica failure (connection refused; hang) to the next good signature;
finally, under the full spread load over three replicas, one replica fails a
third of the way through: failed requests (should be 0) and worst latency.

    python bench/hsm_replicas.py [--seconds 5] [--latency-ms 110] [--chains 4]
                                 [--per-chain 3] [--replicas 1,2,3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from nacl.signing import SigningKey

from kms.config import HsmPolicy
from kms.signer.replicas import ReplicaSet
from kms.signer.yubihsm import YubiHsmDevice, YubiHsmSigner
from kms.signer.yubihsm_session import derive_credentials
from kms.sim.yubihsm import Cap, SimulatedHsm

AUTH_ID, PASSWORD = 2, "bench-password"
FIRST_KEY = 10


@dataclass(frozen=True)
class Throughput:
    replicas: int
    chains: int
    concurrency: int
    seconds: float
    signatures: int
    per_second: float
    p50_ms: float
    p99_ms: float
    per_replica: dict[str, int]


@dataclass(frozen=True)
class LoadFailover:
    fault: str
    replicas: int
    signatures: int
    failed: int
    p50_ms: float
    max_ms: float  # worst request latency across the failure


@dataclass(frozen=True)
class Failover:
    fault: str
    request_timeout: float
    gap_ms: float  # fault injected -> next good signature
    failovers: int


def start_sims(n: int, latency_ms: float, chains: int) -> list[SimulatedHsm]:
    sims = []
    for i in range(n):
        sim = SimulatedHsm(latency_ms=latency_ms, serial=2000001 + i).start()
        sim.device.put_auth_key(AUTH_ID, PASSWORD, capabilities=Cap.SIGN_EDDSA, domains=1)
        for c in range(chains):
            sim.device.put_ed25519_seed(FIRST_KEY + c, bytes([c + 1]) * 32, domains=1)
        sims.append(sim)
    return sims


def build(
    sims: list[SimulatedHsm],
    chains: int,
    policy: Literal["spread", "primary"],
    request_timeout: float = HsmPolicy().request_timeout,
) -> list[ReplicaSet]:
    creds = derive_credentials(AUTH_ID, PASSWORD)
    devices = [
        YubiHsmDevice(
            f"hsm-{i}", s.url, creds, connect_timeout=1.0, request_timeout=request_timeout
        )
        for i, s in enumerate(sims)
    ]
    return [
        ReplicaSet(
            f"chain-{c}",
            [YubiHsmSigner(d, FIRST_KEY + c) for d in devices],
            policy=policy,
            default_timeout=10.0,
        )
        for c in range(chains)
    ]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def throughput(
    n: int, latency_ms: float, chains: int, per_chain: int, seconds: float
) -> Throughput:
    sims = start_sims(n, latency_ms, chains)
    sets = build(sims, chains, "spread")
    try:
        for rs in sets:
            await rs.open()
        latencies: list[float] = []
        by: dict[str, int] = {}
        stop_at = time.monotonic() + seconds
        counter = 0

        async def worker(rs: ReplicaSet) -> None:
            nonlocal counter
            while time.monotonic() < stop_at:
                counter += 1
                msg = b"bench-%d" % counter
                t0 = time.monotonic()
                sig = await rs.sign_traced(msg)
                latencies.append(time.monotonic() - t0)
                by[sig.by] = by.get(sig.by, 0) + 1

        t0 = time.monotonic()
        await asyncio.gather(*(worker(rs) for rs in sets for _ in range(per_chain)))
        elapsed = time.monotonic() - t0
        return Throughput(
            replicas=n,
            chains=chains,
            concurrency=chains * per_chain,
            seconds=round(elapsed, 2),
            signatures=len(latencies),
            per_second=round(len(latencies) / elapsed, 2),
            p50_ms=round(statistics.median(latencies) * 1000, 1),
            p99_ms=round(pct(latencies, 0.99) * 1000, 1),
            per_replica=dict(sorted(by.items())),
        )
    finally:
        for rs in sets:
            await rs.close()
        for s in sims:
            s.stop()


async def failover(
    fault: str, inject: Callable[[SimulatedHsm], None], latency_ms: float, request_timeout: float
) -> Failover:
    sims = start_sims(2, latency_ms, 1)
    (rs,) = build(sims, 1, "primary", request_timeout=request_timeout)
    key = SigningKey(bytes([1]) * 32).verify_key
    try:
        await rs.open()
        for i in range(3):  # warm: sessions up on both devices
            await rs.sign_traced(b"warm-%d" % i)
        t_fault = time.monotonic()
        inject(sims[0])
        i = 0
        while True:
            i += 1
            msg = b"after-%d" % i
            sig = await rs.sign_traced(msg)
            key.verify(msg, sig.signature)
            if sig.by != "hsm-0":
                break
        gap = time.monotonic() - t_fault
        return Failover(fault, request_timeout, round(gap * 1000, 1), rs.stats.failovers)
    finally:
        sims[0].faults.release()
        await rs.close()
        for s in sims:
            s.stop()


async def failover_under_load(
    fault: str,
    inject: Callable[[SimulatedHsm], None],
    latency_ms: float,
    chains: int,
    per_chain: int,
    seconds: float,
) -> LoadFailover:
    """Spread load over three replicas; one fails a third of the way through."""
    sims = start_sims(3, latency_ms, chains)
    sets = build(sims, chains, "spread")
    latencies: list[float] = []
    failed = 0
    try:
        for rs in sets:
            await rs.open()
        stop_at = time.monotonic() + seconds
        counter = 0

        async def worker(rs: ReplicaSet) -> None:
            nonlocal counter, failed
            while time.monotonic() < stop_at:
                counter += 1
                t0 = time.monotonic()
                try:
                    await rs.sign_traced(b"load-%d" % counter, timeout=5.0)
                except Exception:
                    failed += 1
                latencies.append(time.monotonic() - t0)

        async def breaker() -> None:
            await asyncio.sleep(seconds / 3)
            inject(sims[0])

        await asyncio.gather(breaker(), *(worker(rs) for rs in sets for _ in range(per_chain)))
        return LoadFailover(
            fault,
            3,
            len(latencies) - failed,
            failed,
            round(statistics.median(latencies) * 1000, 1),
            round(max(latencies) * 1000, 1),
        )
    finally:
        sims[0].faults.release()
        for rs in sets:
            await rs.close()
        for s in sims:
            s.stop()


async def main(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--latency-ms", type=float, default=110.0)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--per-chain", type=int, default=3, help="concurrent requests per chain")
    ap.add_argument("--replicas", default="1,2,3")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    results: dict[str, Any] = {"latency_ms": args.latency_ms, "throughput": [], "failover": []}
    for n in (int(x) for x in args.replicas.split(",")):
        t = await throughput(n, args.latency_ms, args.chains, args.per_chain, args.seconds)
        results["throughput"].append(asdict(t))
        if not args.json:
            print(
                f"{n} replica(s), {t.chains} chains x {args.per_chain} in flight: "
                f"{t.per_second:6.2f} sig/s  p50 {t.p50_ms:6.1f} ms  p99 {t.p99_ms:6.1f} ms  "
                f"({t.signatures} in {t.seconds}s; {t.per_replica})"
            )
    faults: list[tuple[str, Callable[[SimulatedHsm], None], float]] = [
        ("connection refused", lambda s: s.faults.listener_down(), 2.0),
        ("hang", lambda s: s.faults.hang(), 2.0),
        ("hang", lambda s: s.faults.hang(), 0.5),
    ]
    for name, inject, rt in faults:
        f = await failover(name, inject, args.latency_ms, rt)
        results["failover"].append(asdict(f))
        if not args.json:
            print(
                f"failover on {f.fault:18s} (request_timeout {rt:.1f}s): next good signature "
                f"after {f.gap_ms:7.1f} ms"
            )
    results["failover_under_load"] = []
    for name, inject, _ in faults[:2]:
        lf = await failover_under_load(
            name, inject, args.latency_ms, args.chains, args.per_chain, args.seconds
        )
        results["failover_under_load"].append(asdict(lf))
        if not args.json:
            print(
                f"3 replicas under load, one fails ({lf.fault}): {lf.signatures} signed, "
                f"{lf.failed} failed, p50 {lf.p50_ms:.1f} ms, worst {lf.max_ms:.1f} ms"
            )
    if args.json:
        print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
