"""`kms start` with two YubiHSM2 simulator replicas behind the real `yubihsm` library.

Covers: every request answered by the replica set, load spread over both replicas,
and a replica that dies mid-run (refused connections, then a hang): every request is
still answered within the node's deadline, and the dead replica comes back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from kms.keyfile import write_secret_file
from kms.privval.messages import Dialect
from kms.sim.validator import SimulatedValidator
from kms.sim.yubihsm import SimulatedHsm
from kms.state.store import StateStore
from tests.integration.daemon.harness import Home, KmsProcess, make_home

CHAIN = "hsm-chain-1"
KEY_ID = 7
NODE_DEADLINE = 5.0


@pytest.fixture
def replicas() -> Iterator[list[SimulatedHsm]]:
    sims = [SimulatedHsm(latency_ms=5).start() for _ in range(2)]
    try:
        yield sims
    finally:
        for s in sims:
            s.faults.clear()
            s.stop()


def hsm_config(home: Home, sims: list[SimulatedHsm], addr: str, dialect: str) -> Path:
    password = home.root / "secrets" / "hsm-password"
    if not password.exists():
        write_secret_file(password, b"password")
    text = home.chain_section(CHAIN) + home.validator_section(CHAIN, addr, home.identity, dialect)
    for s in sims:
        s.device.put_ed25519_seed(KEY_ID, home.seed, label="validator")
        text += (
            "[[providers.yubihsm]]\n"
            f'adapter = {{ type = "http", addr = "tcp://{s.host}:{s.port}" }}\n'
            f'auth = {{ key = 1, password_file = "{password}" }}\n'
            f'keys = [{{ chain_ids = ["{CHAIN}"], key = {KEY_ID} }}]\n\n'
        )
    text += '[hsm]\npolicy = "spread"\nhealth_interval = 2\n'
    return home.write_config(text)


def replica_counts(kms: KmsProcess) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in kms.log().splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("msg") in ("signed", "reused"):
                counts[doc["replica"]] = counts.get(doc["replica"], 0) + 1
    return counts


@pytest.mark.parametrize("dialect", [Dialect.V0_34, Dialect.V0_38, Dialect.V1])
async def test_two_replicas_sign_everything_and_share_the_load(
    tmp_path: Path, replicas: list[SimulatedHsm], dialect: Dialect
) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    async with SimulatedValidator(CHAIN, dialect) as node:
        kms = KmsProcess(hsm_config(home, replicas, node.addr, dialect.value))
        try:
            await node.wait_connected(15)
            assert await node.get_pubkey() == bytes(SigningKey(home.seed).verify_key)
            await node.run_heights(6)
        finally:
            assert kms.terminate() == 0, kms.log()
    counts = replica_counts(kms)
    assert len(counts) == 2 and min(counts.values()) >= 3, counts
    for s in replicas:
        assert s.device.signed, "each replica signed something"


@pytest.mark.parametrize("fault", ["listener_down", "hang"])
async def test_a_replica_dying_mid_run_leaves_no_request_unanswered(
    tmp_path: Path, replicas: list[SimulatedHsm], fault: str
) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    async with SimulatedValidator(CHAIN, Dialect.V0_38, retry_window=0.0) as node:
        kms = KmsProcess(hsm_config(home, replicas, node.addr, "v0.38"))
        try:
            await node.wait_connected(15)
            await node.run_heights(3)
            victim = replicas[0]
            getattr(victim.faults, fault)()
            worst = 0.0
            for h in range(4, 12):
                t0 = time.monotonic()
                # retry_window=0: a request not answered in time fails the test
                await asyncio.wait_for(node.run_heights(1, start_height=h), 4 * NODE_DEADLINE)
                worst = max(worst, (time.monotonic() - t0) / 4)
            assert worst < NODE_DEADLINE, f"slowest request took {worst:.2f} s on average"
            victim.faults.clear()  # also releases a hang
            victim.faults.listener_up()
            # the health task brings it back; then it signs again
            before = len(victim.device.signed)
            deadline = time.monotonic() + 15
            h = 12
            while len(victim.device.signed) == before:
                assert time.monotonic() < deadline, "the replica never came back"
                await node.run_heights(1, start_height=h)
                h += 1
        finally:
            assert kms.terminate() == 0, kms.log()
    assert StateStore(home.state_file(CHAIN)).load().height >= 11


async def test_replicas_holding_different_keys_refuse_to_start(
    tmp_path: Path, replicas: list[SimulatedHsm]
) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    cfg = hsm_config(home, replicas, "tcp://127.0.0.1:1", "v0.38")
    replicas[1].device.delete_object(KEY_ID, 3)
    replicas[1].device.put_ed25519_seed(KEY_ID, b"\x42" * 32, label="other")
    proc = await asyncio.create_subprocess_exec(
        "python3",
        "-m",
        "kms",
        "start",
        "-c",
        str(cfg),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    text = err.decode()
    assert f"{replicas[0].host}:{replicas[0].port}" in text
    assert f"{replicas[1].host}:{replicas[1].port}" in text
