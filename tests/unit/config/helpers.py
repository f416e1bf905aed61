"""Builders for config tests: a private home with the secret files a config names."""

from __future__ import annotations

import os
from pathlib import Path

from kms.identity import write_identity_key
from kms.keyfile import write_secret_file

IDENTITY = "secrets/id.key"
SOFT_KEY = "secrets/chain-a.key"
HSM_PASSWORD = "secrets/hsm-password"


def make_home(root: Path) -> Path:
    """A directory holding an identity key, a softsign key and an HSM password (all 0600)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "secrets").mkdir(mode=0o700, exist_ok=True)
    write_identity_key(root / IDENTITY, bytes(range(32)))
    write_identity_key(root / SOFT_KEY, bytes(range(1, 33)))
    write_secret_file(root / HSM_PASSWORD, b"password\n")
    return root


def write_config(home: Path, text: str, name: str = "tmkms.toml") -> Path:
    path = home / name
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


# A valid config touching every section: chain-a on softsign, chain-b on one YubiHSM.
BASE = f"""
[[chain]]
id = "chain-a"
key_format = {{ type = "bech32", account_key_prefix = "cosmospub", consensus_key_prefix = "cosmosvalconspub" }}
state_file = "state/chain-a.json"

[[chain]]
id = "chain-b"
key_format = {{ type = "hex" }}
state_file = "state/chain-b.json"

[[validator]]
chain_id = "chain-a"
addr = "tcp://127.0.0.1:26658"
secret_key = "{IDENTITY}"

[[validator]]
chain_id = "chain-b"
addr = "unix:///run/val-b.sock"

[[providers.softsign]]
chain_ids = ["chain-a"]
path = "{SOFT_KEY}"

[[providers.yubihsm]]
adapter = {{ type = "http", addr = "tcp://127.0.0.1:12345" }}
auth = {{ key = 1, password_file = "{HSM_PASSWORD}" }}
keys = [{{ chain_ids = ["chain-b"], key = 1 }}]

[hsm]
policy = "spread"

[metrics]
listen = "127.0.0.1:9464"
"""
