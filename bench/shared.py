"""Several signer hosts: what the etcd gate costs and how fast another host takes over.

Owns: the `shared` section of `python -m bench`:

- `gate`: the latency the shared watermark adds to a new signature, measured on
  the gate itself (`SharedGate.authorize` for successive new heights, each one
  linearizable compare-and-swap Txn) against a three-member etcd cluster on
  loopback, with etcd's default fsync on. This is exactly the work `[shared_state]`
  inserts between the local decision and the HSM signature. `gate_tmpfs` repeats
  it with the members' data on tmpfs (no disk syncs), to show what the disk costs.
- `takeover`: two `kms start` hosts (softsign, one shared etcd record) dialing one
  simulated node; the active host is killed with SIGKILL and the time to the next
  signature (served by the standby host) is measured, several times, alternating.

Skipped (with the reason) when no etcd binary is installed (scripts/install-etcd).
Never touches anything outside its scratch directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from bench.common import Section, summarize_ms
from kms.cli.demo_hosts import start_kms_process


async def run_shared(workdir: Path, quick: bool) -> Section:
    from kms.sim.etcd_cluster import EtcdCluster, find_etcd

    sec = Section("shared")
    binary = find_etcd()
    if binary is None:
        sec.skipped = "etcd not installed (scripts/install-etcd)"
        return sec
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = EtcdCluster(binary, workdir / "etcd", size=3)
    try:
        await asyncio.to_thread(cluster.start)
        try:
            sec.data["gate"] = await _gate(cluster, 300 if quick else 2000)
        except Exception as e:
            sec.data["gate"] = {"error": f"{type(e).__name__}: {e}"}
        try:
            sec.data["takeover"] = await _takeover(cluster, workdir / "hosts", 3 if quick else 8)
        except Exception as e:
            sec.data["takeover"] = {"error": f"{type(e).__name__}: {e}"}
    finally:
        cluster.stop()
    shm = Path("/dev/shm")
    if shm.is_dir():
        # The same cluster with its data on tmpfs: what the gate costs without disk
        # syncs, to tell etcd's fsyncs (three members on one shared disk here) from
        # the protocol and CPU cost.
        tmp = Path(tempfile.mkdtemp(prefix="kms-bench-etcd-", dir=shm))
        fast = EtcdCluster(binary, tmp, size=3)
        try:
            await asyncio.to_thread(fast.start)
            sec.data["gate_tmpfs"] = await _gate(fast, 300 if quick else 2000)
        except Exception as e:
            sec.data["gate_tmpfs"] = {"error": f"{type(e).__name__}: {e}"}
        finally:
            fast.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    sec.notes.append(
        "gate: SharedGate.authorize for a new height = one etcd Txn (compare mod_revision, "
        "put); 3 etcd members on loopback sharing this machine's disk and CPUs"
    )
    sec.notes.append(
        "takeover: kill -9 of the active kms host -> next signature from the standby host "
        "(its connection already queued at the node)"
    )
    return sec


async def _gate(cluster: object, n: int) -> dict[str, float]:
    from kms.privval.messages import BlockID, PartSetHeader, Timestamp, Vote
    from kms.shared.admin import push
    from kms.shared.etcd import EtcdClient
    from kms.shared.gate import SharedGate
    from kms.sim.etcd_cluster import EtcdCluster
    from kms.state.machine import SignCandidate, SignState

    assert isinstance(cluster, EtcdCluster)
    client = EtcdClient(cluster.endpoints, timeout=2.0)
    try:
        await push(client, "/bench", "bench-chain", SignState.initial(), "bench")
        gate = SharedGate(client, prefix="/bench", chain_id="bench-chain", host_id="bench")
        await gate.load()
        block = BlockID(b"\x01" * 32, PartSetHeader(1, b"\x02" * 32))
        times: list[float] = []
        for h in range(1, n + 1):
            vote = Vote(1, h, 0, block, Timestamp(1_700_000_000 + h, 0), b"\x03" * 20, 0)
            cand = SignCandidate.for_vote("bench-chain", vote)
            t0 = time.perf_counter()
            verdict = await gate.authorize(cand, max_height=None)
            times.append((time.perf_counter() - t0) * 1000)
            if not verdict.allowed:
                raise RuntimeError(f"gate refused height {h}: {verdict.reason}")
        t0 = time.perf_counter()
        for _ in range(50):
            await client.get(gate.key)
        range_ms = (time.perf_counter() - t0) * 1000 / 50
        return {**summarize_ms(times).as_dict(), "linearizable_range_mean": range_ms}
    finally:
        await client.close()


def _home(root: Path, name: str, seed: bytes, node: str, etcd: list[str]) -> Path:
    from kms.identity import write_identity_key
    from kms.keyfile import write_base64_seed
    from kms.state.machine import SignState
    from kms.state.store import StateStore

    home = root / name
    (home / "secrets").mkdir(parents=True, mode=0o700)
    write_identity_key(home / "secrets" / "id.key")
    write_base64_seed(home / "secrets" / "key", seed)
    StateStore.create(home / "state.json", SignState.initial())
    eps = ", ".join(f'"{e}"' for e in etcd)
    text = (
        '[[chain]]\nid = "bench-chain"\nkey_format = { type = "hex" }\n'
        f'state_file = "{home / "state.json"}"\n\n'
        f'[[validator]]\nchain_id = "bench-chain"\naddr = "{node}"\n'
        f'secret_key = "{home / "secrets" / "id.key"}"\nprotocol_version = "v0.38"\ntimeout = 2\n\n'
        '[[providers.softsign]]\nchain_ids = ["bench-chain"]\nkey_format = "base64"\n'
        f'path = "{home / "secrets" / "key"}"\n\n'
        f'[shared_state]\nendpoints = [{eps}]\nprefix = "/bench-hosts"\nhost_id = "{name}"\n'
        "insecure = true\n"
    )
    cfg = home / "kms.toml"
    cfg.write_text(text)
    return cfg


async def _takeover(cluster: object, root: Path, trials: int) -> dict[str, float]:
    from kms.privval.messages import Dialect, SignedMsgType, Vote
    from kms.shared.admin import push
    from kms.shared.etcd import EtcdClient
    from kms.sim.etcd_cluster import EtcdCluster
    from kms.sim.validator import SimulatedValidator, now_timestamp, random_block_id
    from kms.state.machine import SignState

    assert isinstance(cluster, EtcdCluster)
    admin = EtcdClient(cluster.endpoints, timeout=2.0)
    await push(admin, "/bench-hosts", "bench-chain", SignState.initial(), "bench")
    await admin.close()
    seed = os.urandom(32)
    node = SimulatedValidator("bench-chain", Dialect.V0_38, extensions=False, retry_window=15.0)
    await node.start()
    cfgs = [_home(root, n, seed, node.addr, cluster.endpoints) for n in ("a", "b")]
    procs = [start_kms_process(cfgs[0])]
    height = 0
    times: list[float] = []

    async def sign() -> None:
        nonlocal height
        height += 1
        v = Vote(SignedMsgType.PREVOTE, height, 0, random_block_id(), now_timestamp(), b"\x01" * 20)
        await node.sign_vote(v)

    try:
        await node.wait_connected(30)
        await sign()
        procs.append(start_kms_process(cfgs[1]))
        active = 0
        for _ in range(trials):
            await asyncio.sleep(3.0)  # the standby's connection is queued at the node
            await sign()
            procs[active].send_signal(signal.SIGKILL)
            t0 = time.perf_counter()
            await sign()
            times.append((time.perf_counter() - t0) * 1000)
            procs[active].wait(10)
            procs[active] = start_kms_process(cfgs[active])  # comes back as the standby
            active = 1 - active
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        await node.close()
    return summarize_ms(times).as_dict()
