"""`kms demo --hosts 2`: two signer hosts sharing one watermark in a real etcd cluster.

Starts a three-member etcd cluster on 127.0.0.1 (the binary from
scripts/install-etcd), a simulated node pair (an active node and a standby node
sharing the validator key), and two `kms start` processes ("hosts") that both
dial both nodes, with a softsign key (the same key on both, as with HSMs holding
one key). The first host serves the nodes; the second waits as a standby. Half-way
the serving host is killed with SIGKILL: the other takes over, a conflicting vote
at the height the dead host signed last is refused across hosts (the shared etcd
record, not the local state file, knows it), and signing carries on.

Owns only the demo's choreography and output; every part it runs is the real one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kms.errors import KmsError
from kms.identity import write_identity_key
from kms.keyfile import write_base64_seed
from kms.privval.messages import Dialect, SignedMsgType, Vote
from kms.shared.admin import push, read
from kms.shared.etcd import EtcdClient
from kms.sim.etcd_cluster import EtcdCluster, find_etcd
from kms.sim.validator import (
    HeightReport,
    SignerRefused,
    SimulatedValidator,
    now_timestamp,
    random_block_id,
)
from kms.state.machine import SignState
from kms.state.store import StateStore

CHAIN = "kms-demo-hosts-1"
PREFIX = "/kms/demo"
HOSTS = ("kms-a", "kms-b")


def _host_config(root: Path, name: str, seed: bytes, nodes: list[str], etcd: list[str]) -> Path:
    home = root / name
    (home / "secrets").mkdir(parents=True, mode=0o700)
    write_identity_key(home / "secrets" / "identity.key")
    write_base64_seed(home / "secrets" / "consensus.key", seed)
    StateStore.create(home / "state.json", SignState.initial())
    text = (
        f'[[chain]]\nid = "{CHAIN}"\nkey_format = {{ type = "hex" }}\n'
        f'state_file = "{home / "state.json"}"\n\n'
    )
    for addr in nodes:
        text += (
            f'[[validator]]\nchain_id = "{CHAIN}"\naddr = "{addr}"\n'
            f'secret_key = "{home / "secrets" / "identity.key"}"\nprotocol_version = "v0.38"\n'
            "timeout = 2\n\n"
        )
    text += (
        f'[[providers.softsign]]\nchain_ids = ["{CHAIN}"]\nkey_format = "base64"\n'
        f'path = "{home / "secrets" / "consensus.key"}"\n\n'
        f"[shared_state]\nendpoints = [{', '.join(f'{e!r}' for e in etcd)}]\n"
        f'prefix = "{PREFIX}"\nhost_id = "{name}"\ntimeout = "500ms"\n'
        "insecure = true  # loopback demo only\n"
    ).replace("'", '"')
    path = home / "kms.toml"
    path.write_text(text)
    return path


def start_kms_process(config: Path) -> subprocess.Popen[bytes]:
    """`kms start -c CONFIG` in its own session, output appended to CONFIG.log."""
    log = open(config.with_suffix(".log"), "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "kms", "start", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


async def run_two_hosts(root: Path, heights: int, say: Callable[[str], None]) -> int:
    binary = find_etcd()
    if binary is None:
        say("kms demo --hosts 2 needs etcd: run scripts/install-etcd (or set KMS_ETCD_BIN)")
        return 2
    cluster = EtcdCluster(binary, root / "etcd", size=3)
    nodes = [SimulatedValidator(CHAIN, Dialect.V0_38, extensions=False, retry_window=10.0)
             for _ in range(2)]  # fmt: skip
    procs: dict[str, subprocess.Popen[bytes]] = {}
    admin: EtcdClient | None = None
    try:
        await asyncio.to_thread(cluster.start)
        say(f"etcd:       3 members on {', '.join(cluster.endpoints)} ({binary})")
        admin = EtcdClient(cluster.endpoints, timeout=2.0)
        await push(admin, PREFIX, CHAIN, SignState.initial(), "demo-init")
        for n in nodes:
            await n.start()
        say(f"nodes:      active {nodes[0].addr}, standby {nodes[1].addr} (one validator key)")
        seed = os.urandom(32)
        configs = {
            h: _host_config(root, h, seed, [n.addr for n in nodes], cluster.endpoints)
            for h in HOSTS
        }
        procs[HOSTS[0]] = start_kms_process(configs[HOSTS[0]])
        await nodes[0].wait_connected(30)
        await nodes[1].wait_connected(30)
        procs[HOSTS[1]] = start_kms_process(configs[HOSTS[1]])
        say(f"hosts:      {HOSTS[0]} serves both nodes; {HOSTS[1]} dials them as a standby")
        say("")
        return await _play(admin, nodes, procs, configs, heights, say)
    except (KmsError, OSError, TimeoutError, RuntimeError) as e:
        say(f"demo failed: {e}")
        return 1
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        for n in nodes:
            await n.close()
        if admin is not None:
            await admin.close()
        cluster.stop()


async def _play(
    admin: EtcdClient,
    nodes: list[SimulatedValidator],
    procs: dict[str, subprocess.Popen[bytes]],
    configs: dict[str, Path],
    heights: int,
    say: Callable[[str], None],
) -> int:
    active = nodes[0]

    async def show(r: HeightReport) -> None:
        got = await read(admin, PREFIX, CHAIN)
        who = got[0].host if got is not None else "?"
        lat = "  ".join(f"{k} {v:6.1f} ms" for k, v in r.latency_ms.items() if k != "pubkey")
        say(f"height {r.height:4d}  {lat}   etcd record written by {who}")

    async def play(first: int, last: int) -> None:
        for h in range(first, last + 1):
            reports: list[HeightReport] = []
            await active.run_heights(1, start_height=h, on_height=reports.append)
            await show(reports[0])

    half = max(1, heights // 2)
    await play(1, half)
    standby_log = configs[HOSTS[1]].with_suffix(".log")
    deadline = time.monotonic() + 20
    while f"standby for node {active.addr}" not in standby_log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{HOSTS[1]} never reported itself as a standby")
        await asyncio.sleep(0.1)
    say(f"({HOSTS[1]} logs: standby for node {active.addr}, kms_link_standby = 1)")

    procs[HOSTS[0]].send_signal(signal.SIGKILL)
    procs[HOSTS[0]].wait(10)
    t0 = time.monotonic()
    say(f"-- {HOSTS[0]} killed (kill -9) --")
    conflicting = Vote(
        SignedMsgType.PRECOMMIT, half, 0, random_block_id(), now_timestamp(), b"\x01" * 20
    )
    try:
        await nodes[1].sign_vote(conflicting)
        say("!! a conflicting precommit was signed across hosts: this must never happen")
        return 1
    except SignerRefused as e:
        say(
            f"{HOSTS[1]} took over in {(time.monotonic() - t0) * 1000:.0f} ms and refused a"
            f" precommit for another block at height {half}, which {HOSTS[0]} signed"
            f" (code {e.error.code}: {e.error.description})"
        )
    await play(half + 1, heights)
    say("")
    say(f"done: {heights} heights signed across two hosts, no conflicting signature")
    return 0
