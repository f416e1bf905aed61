"""Secret key files: reading and writing them with mode 0600.

Owns: the 0600 rules for every secret file kms reads or writes (keys, HSM and
etcd passwords), softsign's base64 seed files, CometBFT's
`priv_validator_key.json`, and new random seeds.

Rules:
- A secret file is created with `os.open(..., 0o600)` and never chmod-ed
  afterwards (no window where it is readable by others); an existing file is
  never overwritten unless the caller says so.
- A secret file that is group- or world-accessible is refused when read, with
  a message naming the file, its mode and the `chmod 600` fix.
- Every malformed input raises `KeyFileError` naming the file and the problem.

Never touches devices, sockets or double-sign state; public key formats are
`kms.pubkey`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kms.errors import KeyFileError
from kms.fsutil import atomic_write
from kms.pubkey import ED25519_SEED_LEN, public_key_from_seed, validator_address

COMETBFT_PUBKEY_TYPE = "tendermint/PubKeyEd25519"
COMETBFT_PRIVKEY_TYPE = "tendermint/PrivKeyEd25519"


# --- new seeds ------------------------------------------------------------------------


def generate_seed(randbytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """A fresh 32-byte Ed25519 seed from `randbytes` (the OS CSPRNG unless a test injects one)."""
    seed = randbytes(ED25519_SEED_LEN)
    if len(seed) != ED25519_SEED_LEN:
        raise ValueError("random source returned the wrong number of bytes")
    return seed


# --- secret files ---------------------------------------------------------------------


MAX_SECRET_FILE_LEN = 65536
"""Secret files (keys, passwords, priv_validator_key.json) are tiny; refuse to slurp big ones."""


def check_private_mode(path: Path) -> os.stat_result:
    """Require a regular file that no one but its owner can read, write or execute.

    Raises KeyFileError naming the path, the problem and the fix.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: file does not exist") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot stat: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path}: not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{path}: permissions {mode:04o} let group or other users read a secret; "
            f"run: chmod 600 {path}"
        )
    return st


def read_secret_file(path: Path, *, max_len: int = MAX_SECRET_FILE_LEN) -> bytes:
    """Read a small secret file after `check_private_mode`; KeyFileError on any failure."""
    path = Path(path)
    check_private_mode(path)
    try:
        with path.open("rb") as f:
            data = f.read(max_len + 1)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > max_len:
        raise KeyFileError(f"{path}: file is larger than {max_len} bytes; not a key file")
    return data


def write_secret_file(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Durably write `data` to a file created with mode 0600 (never chmod-ed).

    Refuses to replace an existing file unless `overwrite` (then the existing file
    must itself already be 0600). The content goes to a fresh temporary file that
    is renamed into place (kms.fsutil.atomic_write): never a symlink followed,
    never a half-written key, the old key intact if anything fails.
    """
    path = Path(path)
    if overwrite and path.exists():
        check_private_mode(path)
    try:
        atomic_write(path, data, mode=0o600, overwrite=overwrite)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key file") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot write: {e}") from None


# --- base64 seed files -----------------------------------------------------------------


def decode_base64_key(path: Path, raw: bytes) -> bytes:
    """Decode the base64 content of a softsign key file (whitespace around it allowed)."""
    try:
        return base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{path}: not valid base64") from None


def write_base64_seed(path: Path, seed: bytes, *, overwrite: bool = False) -> None:
    """Write a 32-byte seed as base64 (tmkms's softsign `base64` format), mode 0600."""
    if len(seed) != ED25519_SEED_LEN:
        raise ValueError("an Ed25519 seed is 32 bytes")
    write_secret_file(path, base64.b64encode(seed) + b"\n", overwrite=overwrite)


# --- CometBFT priv_validator_key.json ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrivValidatorKey:
    """The content of a CometBFT `priv_validator_key.json` (seed and derived values)."""

    seed: bytes
    public_key: bytes
    address: str

    def __repr__(self) -> str:  # never print the seed
        return f"PrivValidatorKey(address={self.address!r})"


def parse_priv_validator_key(path: Path, raw: bytes) -> PrivValidatorKey:
    """Parse and cross-check a `priv_validator_key.json` (address, pub_key, priv_key)."""
    try:
        obj: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KeyFileError(f"{path}: not valid JSON ({e})") from None
    try:
        priv = obj["priv_key"]
        ptype, pvalue = priv["type"], priv["value"]
    except (TypeError, KeyError):
        raise KeyFileError(f"{path}: missing priv_key.type / priv_key.value") from None
    if ptype != COMETBFT_PRIVKEY_TYPE:
        raise KeyFileError(
            f"{path}: priv_key.type is {ptype!r}, expected {COMETBFT_PRIVKEY_TYPE!r}"
        )
    try:
        secret = base64.b64decode(pvalue, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise KeyFileError(f"{path}: priv_key.value is not valid base64") from None
    if len(secret) != 64:
        raise KeyFileError(f"{path}: priv_key.value is {len(secret)} bytes, expected 64")
    seed, pub_in_priv = secret[:32], secret[32:]
    public_key = public_key_from_seed(seed)
    if pub_in_priv != public_key:
        raise KeyFileError(f"{path}: priv_key.value's public half does not match its seed")
    pub = obj.get("pub_key")
    if pub is not None:
        if not isinstance(pub, dict) or pub.get("type") != COMETBFT_PUBKEY_TYPE:
            raise KeyFileError(f"{path}: pub_key.type must be {COMETBFT_PUBKEY_TYPE!r}")
        try:
            pub_bytes = base64.b64decode(pub.get("value", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise KeyFileError(f"{path}: pub_key.value is not valid base64") from None
        if pub_bytes != public_key:
            raise KeyFileError(f"{path}: pub_key does not match priv_key")
    address = validator_address(public_key)
    declared = obj.get("address")
    if declared is not None and str(declared).upper() != address:
        raise KeyFileError(f"{path}: address {declared} does not match the key ({address})")
    return PrivValidatorKey(seed=seed, public_key=public_key, address=address)


def read_priv_validator_key(path: Path) -> PrivValidatorKey:
    path = Path(path)
    return parse_priv_validator_key(path, read_secret_file(path))


def priv_validator_key_json(seed: bytes) -> bytes:
    public_key = public_key_from_seed(seed)
    doc = {
        "address": validator_address(public_key),
        "pub_key": {"type": COMETBFT_PUBKEY_TYPE, "value": base64.b64encode(public_key).decode()},
        "priv_key": {
            "type": COMETBFT_PRIVKEY_TYPE,
            "value": base64.b64encode(seed + public_key).decode(),
        },
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def write_priv_validator_key(path: Path, seed: bytes, *, overwrite: bool = False) -> None:
    write_secret_file(path, priv_validator_key_json(seed), overwrite=overwrite)
