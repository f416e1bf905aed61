"""The files and simulators behind `kms demo`: a throw-away kms home on 127.0.0.1.

Owns: creating the demo key, the HSM simulators that hold it (replicas), the
password and identity files, a fresh state file, and the config that ties them to
one validator address. Never used by `kms start`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kms.config import Config, load_config
from kms.identity import write_identity_key
from kms.keyfile import write_base64_seed, write_secret_file
from kms.privval.messages import Dialect
from kms.signer.yubihsm_session import FACTORY_AUTH_KEY_ID
from kms.sim.yubihsm import SimulatedHsm
from kms.state.machine import SignState
from kms.state.store import StateStore

DEMO_KEY_ID = 1
FACTORY_PASSWORD = "password"


class DemoSetup:
    def __init__(
        self, root: Path, *, replicas: int, latency_ms: float, seed: bytes | None = None
    ) -> None:
        self.root = root
        self.replicas = replicas
        self.latency_ms = latency_ms
        self.seed = seed or os.urandom(32)
        self.hsms: list[SimulatedHsm] = []
        self.names: list[str] = []
        (root / "secrets").mkdir(mode=0o700, exist_ok=True)
        (root / "state").mkdir(mode=0o700, exist_ok=True)
        self.identity = root / "secrets" / "kms-identity.key"
        self.password_file = root / "secrets" / "hsm-password"
        self.softsign_key = root / "secrets" / "consensus.key"

    def start_hsms(self) -> None:
        for _ in range(self.replicas):
            hsm = SimulatedHsm(latency_ms=self.latency_ms).start()
            hsm.device.put_ed25519_seed(DEMO_KEY_ID, self.seed, label="kms-demo")
            self.hsms.append(hsm)
            self.names.append(f"{hsm.host}:{hsm.port}")

    def stop_hsms(self) -> None:
        for hsm in self.hsms:
            hsm.stop()
        self.hsms.clear()

    def replica_label(self, name: str) -> str:
        """A replica in words, as the demo prints it: `replica 2 (127.0.0.1:40661)`."""
        if name in self.names:
            return f"replica {self.names.index(name) + 1} ({name})"
        return name

    def signature_counts(self, counts: Mapping[str, int]) -> str:
        """`replica 1 (host:port): 3 signatures, ...` (or `-` when there are none)."""
        order = {name: i for i, name in enumerate(self.names)}
        parts = [
            f"{self.replica_label(k)}: {v} signature{'s' if v != 1 else ''}"
            for k, v in sorted(counts.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
            if v
        ]
        return ", ".join(parts) or "-"

    def describe(self) -> str:
        if not self.hsms:
            return "kms demo\n  key:        software key (softsign) in a 0600 file"
        lines = [
            "kms demo (simulated YubiHSM2s hold the key UNPROTECTED: never use a real key here)"
        ]
        for i, hsm in enumerate(self.hsms, 1):
            lines.append(
                f"  replica {i}:  {hsm.url} (key id {DEMO_KEY_ID}, {hsm.latency_ms:g} ms/signature)"
            )
        return "\n".join(lines)

    def write_config(
        self, chain_id: str, addr: str, dialect: Dialect, *, state: SignState | None = None
    ) -> Config:
        state_file = self.root / "state" / f"{chain_id}.json"
        if not state_file.exists():
            StateStore.create(state_file, state or SignState.initial())
        if not self.identity.exists():
            write_identity_key(self.identity)
        text = (
            f'[[chain]]\nid = "{chain_id}"\n'
            'key_format = { type = "bech32", account_key_prefix = "cosmospub", '
            'consensus_key_prefix = "cosmosvalconspub" }\n'
            f'state_file = "{state_file}"\n\n'
            f'[[validator]]\nchain_id = "{chain_id}"\naddr = "{addr}"\n'
            f'secret_key = "{self.identity}"\nprotocol_version = "{dialect.value}"\n\n'
        )
        if self.hsms:
            if not self.password_file.exists():
                write_secret_file(self.password_file, FACTORY_PASSWORD.encode())
            for hsm in self.hsms:
                text += (
                    "[[providers.yubihsm]]\n"
                    f'adapter = {{ type = "http", addr = "tcp://{hsm.host}:{hsm.port}" }}\n'
                    f'auth = {{ key = {FACTORY_AUTH_KEY_ID}, password_file = "{self.password_file}" }}\n'
                    f'keys = [{{ chain_ids = ["{chain_id}"], key = {DEMO_KEY_ID} }}]\n\n'
                )
            text += '[hsm]\npolicy = "spread"\nhealth_interval = 2\n'
        else:
            if not self.softsign_key.exists():
                write_base64_seed(self.softsign_key, self.seed)
            text += (
                f'[[providers.softsign]]\nchain_ids = ["{chain_id}"]\nkey_type = "consensus"\n'
                f'key_format = "base64"\npath = "{self.softsign_key}"\n'
            )
        path = self.root / "kms.toml"
        path.write_text(text)
        return load_config(path)
