"""Two kms hosts, one node: the second host is a visible standby and takes over fast.

A node serves one signer at a time; the other host's connection waits in the
node's backlog and its handshake times out. That host must say so ("standby for
node ...", kms_link_standby 1), keep a connection queued, and sign the next
request soon after the first host dies (kill -9). Both hosts share one etcd
watermark, so the take-over cannot double-sign what the dead host signed.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from nacl.signing import SigningKey

from kms.privval import canonical
from kms.privval.messages import Dialect, SignedMsgType, Vote
from kms.shared.admin import push
from kms.shared.etcd import EtcdClient
from kms.sim.etcd_cluster import EtcdCluster
from kms.sim.validator import SignerRefused, SimulatedValidator, now_timestamp, random_block_id
from kms.state.machine import SignState
from tests.integration.daemon.harness import KmsProcess, make_home, wait_until

CHAIN = "standby-chain"
PREFIX = "/kms/standby"


def host_config(
    root: Path, name: str, seed: bytes, node: str, etcd: list[str]
) -> tuple[Path, Path]:
    home = make_home(root / name, [CHAIN], seed=seed)
    eps = ", ".join(f'"{e}"' for e in etcd)
    prom = root / name / "metrics.prom"
    text = home.chain_section(CHAIN)
    text += home.validator_section(CHAIN, node, home.identity, "v0.38").replace(
        "timeout = 5", "timeout = 2"
    )
    text += home.softsign_section([CHAIN])
    text += f'[shared_state]\nendpoints = [{eps}]\nprefix = "{PREFIX}"\nhost_id = "{name}"\ninsecure = true\n\n'
    text += f'[metrics]\ntextfile = "{prom}"\ninterval = 0.5\n'
    return home.write_config(text), prom


def standby_gauge(prom: Path) -> float | None:
    try:
        m = re.search(r"^kms_link_standby\{[^}]*\} (\S+)$", prom.read_text(), re.M)
    except OSError:
        return None
    return float(m[1]) if m else None


async def test_standby_is_visible_and_takes_over(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    seed = os.urandom(32)
    admin = EtcdClient(etcd_cluster.endpoints, timeout=2.0)
    await push(admin, PREFIX, CHAIN, SignState.initial(), "init")
    await admin.close()
    node = SimulatedValidator(CHAIN, Dialect.V0_38, extensions=False, retry_window=10.0)
    await node.start()
    cfg_a, _ = host_config(tmp_path, "a", seed, node.addr, etcd_cluster.endpoints)
    cfg_b, prom_b = host_config(tmp_path, "b", seed, node.addr, etcd_cluster.endpoints)
    a = KmsProcess(cfg_a)
    b: KmsProcess | None = None
    try:
        await node.wait_connected(20)
        b = KmsProcess(cfg_b)
        first = Vote(SignedMsgType.PREVOTE, 1, 0, random_block_id(), now_timestamp(), b"\x01" * 20)
        signed = await node.sign_vote(first)
        try:
            await wait_until(lambda: standby_gauge(prom_b) == 1.0, 20)
        except TimeoutError:
            raise AssertionError(b.log()[-4000:]) from None
        assert f"standby for node {node.addr}" in b.log()
        assert node.connections == 1

        a.kill()
        t0 = time.monotonic()
        # b signs the next height...
        nxt = Vote(SignedMsgType.PREVOTE, 2, 0, random_block_id(), now_timestamp(), b"\x01" * 20)
        await node.sign_vote(nxt)
        takeover = time.monotonic() - t0
        # ...and refuses a conflicting message at the height a signed (shared watermark).
        conflict = Vote(
            SignedMsgType.PREVOTE, 1, 0, random_block_id(), now_timestamp(), b"\x01" * 20
        )
        try:
            await node.sign_vote(conflict)
            raise AssertionError("conflicting vote at height 1 was signed by the standby")
        except SignerRefused as e:
            assert e.error.code in (2, 3)
        SigningKey(seed).verify_key.verify(
            canonical.vote_sign_bytes(CHAIN, signed), signed.signature
        )
        await wait_until(lambda: standby_gauge(prom_b) == 0.0, 10)
        print(f"\nhost take-over after kill -9: {takeover * 1000:.0f} ms")
        assert takeover < 5.0, takeover
    finally:
        a.kill()
        if b is not None:
            b.kill()
        await node.close()
        await asyncio.sleep(0)
