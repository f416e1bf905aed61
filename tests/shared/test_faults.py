"""Fault injection: real `kms start` hosts sharing a real three-member etcd cluster.

Each kms host has its own state file and dials its own simulated nodes; every
node asks for the same heights at the same moments with conflicting blocks
(two candidates per height, chosen at random), so hosts race each other through
etcd and links race each other inside a host. Meanwhile the schedule kills a kms
host (kill -9) and restarts it, SIGSTOPs the etcd leader, kills etcd members and
the leader, and, through a TCP proxy on every kms-to-etcd path, partitions a
host, delays, cuts connections and loses commit answers.

An independent checker sees every reply from every node, re-verifies each
signature against the key, and proves: at every (height, round, step) all
signed votes have identical sign bytes, and all signed proposals one block ID
and POL round (proposals may differ in timestamp only). It also checks that the
etcd record is never below a host's state file, and that signing resumed after
every fault.

CI runs one bounded cycle (about a minute). KMS_SHARED_SOAK=<seconds> repeats
the schedule for that long, with three hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nacl.signing import SigningKey, VerifyKey

from kms.errors import KmsError
from kms.privval import canonical
from kms.privval.messages import BlockID, Dialect, PartSetHeader, Proposal, SignedMsgType, Vote
from kms.shared.admin import push, read
from kms.shared.etcd import EtcdClient
from kms.sim.etcd_cluster import EtcdCluster, Member
from kms.sim.validator import SignerRefused, SimulatedValidator, now_timestamp
from kms.state.machine import SignState
from kms.state.store import StateStore
from tests.integration.daemon.harness import Home, KmsProcess, make_home
from tests.shared.tcp_proxy import TcpProxy

CHAIN = "shared-chain"
PREFIX = "/kms/faults"
HEIGHT_PERIOD = 0.4  # seconds per simulated height
SOAK = float(os.environ.get("KMS_SHARED_SOAK", "0"))


@dataclass
class Host:
    name: str
    home: Home
    proxies: list[TcpProxy]
    nodes: list[SimulatedValidator]
    config: Path
    proc: KmsProcess | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = KmsProcess(self.config)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


@dataclass
class Checker:
    """Every reply from every node; the judge of safety."""

    key: VerifyKey
    votes: dict[tuple[int, int, int], dict[bytes, list[str]]] = field(default_factory=dict)
    proposals: dict[tuple[int, int], set[tuple[BlockID, int]]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    signed_at: dict[str, list[float]] = field(default_factory=dict)

    def vote(self, who: str, signed: Vote) -> None:
        sb = canonical.vote_sign_bytes(CHAIN, signed)
        self.key.verify(sb, signed.signature)
        self.votes.setdefault((signed.height, signed.round, signed.type), {}).setdefault(
            sb, []
        ).append(who)
        self._signed(who)

    def proposal(self, who: str, signed: Proposal) -> None:
        self.key.verify(canonical.proposal_sign_bytes(CHAIN, signed), signed.signature)
        self.proposals.setdefault((signed.height, signed.round), set()).add(
            (signed.block_id, signed.pol_round)
        )
        self._signed(who)

    def _signed(self, who: str) -> None:
        self.outcomes["signed"] += 1
        self.signed_at.setdefault(who.split("/")[0], []).append(time.monotonic())

    def violations(self) -> list[str]:
        bad = [
            f"votes at {k}: {len(v)} different messages"
            for k, v in self.votes.items()
            if len(v) > 1
        ]
        bad += [f"proposals at {k}: {v}" for k, v in self.proposals.items() if len(v) > 1]
        return bad


def blocks_for(height: int) -> tuple[BlockID, BlockID]:
    def b(tag: int) -> BlockID:
        h = height.to_bytes(8, "big")
        return BlockID(bytes([tag]) * 24 + h, PartSetHeader(1, bytes([tag + 1]) * 24 + h))

    return b(0x10), b(0x20)


async def drive(
    node: SimulatedValidator, who: str, checker: Checker, t0: float, stop: asyncio.Event, seed: int
) -> None:
    """Play heights on the shared clock; each step picks one of the two blocks at random."""
    rng = random.Random(seed)
    height = 0
    while not stop.is_set():
        height = max(height + 1, int((time.monotonic() - t0) / HEIGHT_PERIOD) + 1)
        start_at = t0 + (height - 1) * HEIGHT_PERIOD
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        rnd = 0 if rng.random() < 0.8 else 1
        for step in ("proposal", SignedMsgType.PREVOTE, SignedMsgType.PRECOMMIT):
            if stop.is_set():
                return
            try:
                await one_request(node, who, checker, rng, height, rnd, step)
            except SignerRefused:
                checker.outcomes["refused"] += 1
            except KmsError:
                checker.outcomes["no_answer"] += 1


async def one_request(
    node: SimulatedValidator,
    who: str,
    checker: Checker,
    rng: random.Random,
    height: int,
    rnd: int,
    step: str | int,
) -> None:
    blocks = blocks_for(height)
    if step == "proposal":
        p = Proposal(SignedMsgType.PROPOSAL, height, rnd, -1, rng.choice(blocks), now_timestamp())
        checker.proposal(who, await node.sign_proposal(p))
        return
    assert isinstance(step, int)
    block = rng.choice([*blocks, BlockID()])  # nil too: nil versus a block is slashable
    v = Vote(step, height, rnd, block, now_timestamp(), b"\x01" * 20, 0)
    checker.vote(who, await node.sign_vote(v))


async def leader(cluster: EtcdCluster) -> Member | None:
    """The member that is the raft leader now (via Status on each member)."""
    for m in cluster.members:
        if not m.alive() or m.stopped:
            continue
        c = EtcdClient([m.endpoint], timeout=0.5)
        try:
            st = await c.status(m.endpoint)
            if st.leader == st.member_id:
                return m
        except KmsError:
            pass
        finally:
            await c.close()
    return None


def shared_section(host: str, proxies: list[TcpProxy], preference: bool) -> str:
    eps = ", ".join(f'"{p.endpoint}"' for p in proxies)
    pref = 'preference = { ttl = 2, delay = "100ms" }\n' if preference else ""
    return (
        f'[shared_state]\nendpoints = [{eps}]\nprefix = "{PREFIX}"\nhost_id = "{host}"\n'
        f'timeout = "500ms"\ninsecure = true\n{pref}\n'
    )


async def make_host(
    name: str, root: Path, seed: bytes, cluster: EtcdCluster, n_nodes: int, preference: bool
) -> Host:
    home = make_home(root / name, [CHAIN], seed=seed)
    proxies = [TcpProxy(m.client_port) for m in cluster.members]
    for p in proxies:
        await p.start()
    nodes = [
        SimulatedValidator(CHAIN, Dialect.V0_38, timeout=2.0, retry_window=1.0, extensions=False)
        for _ in range(n_nodes)
    ]
    for n in nodes:
        await n.start()
    text = home.chain_section(CHAIN)
    for n in nodes:
        text += home.validator_section(CHAIN, n.addr, home.identity, "v0.38")
    text += home.softsign_section([CHAIN])
    text += shared_section(name, proxies, preference)
    text += f'[metrics]\ntextfile = "{root / name / "metrics.prom"}"\ninterval = 1\n'
    return Host(name, home, proxies, nodes, home.write_config(text))


@pytest.mark.slow
@pytest.mark.parametrize("preference", [False, True], ids=["no-preference", "preference"])
async def test_no_conflicting_signatures_under_faults(
    etcd_cluster: EtcdCluster, tmp_path: Path, preference: bool
) -> None:
    seed = os.urandom(32)
    n_hosts = 3 if SOAK else 2
    hosts = [
        await make_host(n, tmp_path, seed, etcd_cluster, 2, preference)
        for n in ("kms-a", "kms-b", "kms-c")[:n_hosts]
    ]
    admin = EtcdClient(etcd_cluster.endpoints, timeout=2.0)
    await push(admin, PREFIX, CHAIN, SignState.initial(), "test-init")
    checker = Checker(SigningKey(seed).verify_key)
    stop = asyncio.Event()
    log: list[str] = []
    try:
        for h in hosts:
            h.start()
        for h in hosts:
            for n in h.nodes:
                await n.wait_connected(30)
        t0 = time.monotonic() + 0.5
        drivers = [
            asyncio.create_task(
                drive(n, f"{h.name}/{i}", checker, t0, stop, seed=hash((h.name, i)) & 0xFFFF)
            )
            for h in hosts
            for i, n in enumerate(h.nodes)
        ]
        deadline = time.monotonic() + max(SOAK, 1.0)
        cycle = 0
        last_heal = time.monotonic()
        while True:
            last_heal = await fault_cycle(etcd_cluster, hosts, log, random.Random(cycle))
            cycle += 1
            if time.monotonic() > deadline:
                break
        await asyncio.sleep(6.0)  # quiet tail: everything healed, signing must go on
        stop.set()
        await asyncio.gather(*drivers, return_exceptions=True)

        bad = checker.violations()
        assert bad == [], "\n".join(bad + log)
        assert checker.outcomes["signed"] > 50, (checker.outcomes, log)
        assert checker.outcomes["refused"] > 0, checker.outcomes  # the races were real
        for h in hosts:  # liveness: every host signed after the last fault healed
            assert any(t > last_heal for t in checker.signed_at.get(h.name, [])), (
                h.name,
                log,
                h.proc.log()[-3000:] if h.proc else "",
            )
        rec = await read(admin, PREFIX, CHAIN)
        assert rec is not None
        for h in hosts:
            local = StateStore(h.home.state_file(CHAIN)).load()
            assert rec[0].hrs >= local.hrs, (h.name, rec[0].hrs, local.hrs)
        if preference:  # the preference job ran in the daemons
            assert any("preferred host: kms-" in h.proc.log() for h in hosts if h.proc)
        counts = shared_counts(hosts)
        assert counts.get("committed", 0) > 0 and counts.get("conflict", 0) > 0, counts
        print(f"\nfaults: {checker.outcomes} gate: {counts} cycles: {cycle}\n" + "\n".join(log))
    finally:
        stop.set()
        for h in hosts:
            h.kill()
            for n in h.nodes:
                await n.close()
            for p in h.proxies:
                await p.close()
        await admin.close()


def shared_counts(hosts: list[Host]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for h in hosts:
        path = h.home.root / "metrics.prom"
        with contextlib.suppress(OSError):
            for m in re.finditer(
                r'^kms_shared_state_total\{chain="[^"]*",result="(\w+)"\} (\S+)$',
                path.read_text(),
                re.M,
            ):
                out[m[1]] += float(m[2])
    return dict(out)


async def fault_cycle(
    cluster: EtcdCluster, hosts: list[Host], log: list[str], rng: random.Random
) -> float:
    """One pass over every fault; returns the time the last one healed."""
    t_start = time.monotonic()

    def note(what: str) -> None:
        log.append(f"{time.monotonic() - t_start:6.1f}s {what}")

    a, b = hosts[0], hosts[1]
    await asyncio.sleep(4)
    victim = rng.choice(hosts)
    note(f"kill -9 {victim.name}")
    victim.kill()
    await asyncio.sleep(3)
    note(f"restart {victim.name}")
    victim.start()
    await asyncio.sleep(3)

    m = await leader(cluster)
    if m is not None:
        note(f"SIGSTOP etcd leader {m.name}")
        cluster.pause(m)
        await asyncio.sleep(2.5)
        note(f"SIGCONT {m.name}")
        cluster.resume(m)
    await asyncio.sleep(2)

    m = rng.choice(cluster.members)
    note(f"kill -9 etcd {m.name}")
    cluster.kill(m)
    await asyncio.sleep(3)
    note(f"restart etcd {m.name}")
    await asyncio.to_thread(cluster.restart, m)
    await asyncio.sleep(1)

    note(f"partition {b.name} from etcd (blackhole)")
    for p in b.proxies:
        p.set("blackhole")
    await asyncio.sleep(3)
    for p in b.proxies:
        p.heal()
    note(f"delay 50 ms for {a.name}")
    for p in a.proxies:
        p.set("delay", 0.05)
    await asyncio.sleep(3)
    for p in a.proxies:
        p.heal()

    lossy = [*a.proxies[:2], *b.proxies[1:]]
    note("lose commit answers on two of three paths of each host")
    for p in lossy:
        p.set("lose_replies")
    await asyncio.sleep(4)
    for p in lossy:
        p.heal()
    note(f"lost replies: {sum(p.lost_replies for h in hosts for p in h.proxies)}")

    note("cut connections on one path per host")
    for h in hosts:
        h.proxies[rng.randrange(3)].set("drop")
    await asyncio.sleep(2)
    for h in hosts:
        for p in h.proxies:
            p.heal()

    m = await leader(cluster)
    if m is not None:
        note(f"kill -9 etcd leader {m.name}")
        cluster.kill(m)
        await asyncio.sleep(3)
        note(f"restart etcd {m.name}")
        await asyncio.to_thread(cluster.restart, m)
    note("all healed")
    return time.monotonic()
