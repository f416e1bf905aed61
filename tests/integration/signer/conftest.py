"""Simulated YubiHSM2 replicas reached through the real `yubihsm` library over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kms.keyfile import write_secret_file
from kms.sim.yubihsm import Cap, SimulatedHsm

SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
WRAP_KEY = bytes(range(100, 132))
SIGNER_AUTH_ID = 2
SIGNER_PASSWORD = "signer-password"
ADMIN_AUTH_ID = 1  # the factory default auth key, password "password"
ADMIN_PASSWORD = "password"
KEY_ID = 4


def provision(sim: SimulatedHsm, *, wrap_key: bytes | None = WRAP_KEY) -> None:
    """A signer auth key (sign-eddsa only, domain 1) and the shared wrap key (id 1)."""
    sim.device.put_auth_key(SIGNER_AUTH_ID, SIGNER_PASSWORD, capabilities=Cap.SIGN_EDDSA, domains=1)
    if wrap_key is not None:
        sim.device.put_wrap_key(1, wrap_key)


SimFactory = Callable[..., list[SimulatedHsm]]


@pytest.fixture
def sims() -> Iterator[SimFactory]:
    started: list[SimulatedHsm] = []

    def make(n: int, *, latency_ms: float = 0.0, seed: bytes | None = SEED) -> list[SimulatedHsm]:
        out = []
        for i in range(n):
            sim = SimulatedHsm(latency_ms=latency_ms, serial=1000001 + len(started)).start()
            started.append(sim)
            provision(sim)
            if seed is not None:
                sim.device.put_ed25519_seed(KEY_ID, seed, domains=1)
            out.append(sim)
            del i
        return out

    yield make
    for sim in started:
        sim.faults.clear()
        sim.stop()


@pytest.fixture
def admin_password_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-password"
    write_secret_file(path, ADMIN_PASSWORD.encode() + b"\n")
    return path


def objects_of(sim: SimulatedHsm) -> list[tuple[int, int, bytes]]:
    """What a device holds, to prove a failed command changed nothing."""
    return sorted((o.id, o.type, bytes(o.secret)) for o in sim.device.objects())
