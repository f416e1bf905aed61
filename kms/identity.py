"""The SecretConnection identity key file: `[[validator]] secret_key`.

Owns: reading and writing the Ed25519 identity key that `kms` presents when it
dials a validator node. Never touches consensus keys, sockets or the handshake
itself (that is `kms.secretconn`).

File format (what tmkms writes, so an existing tmkms identity key works as is):
the standard Base64 encoding of the 32-byte Ed25519 seed, no line break. We
write exactly that. When reading we also accept, because operators have them:

- Base64 of 64 bytes (seed || public key, the Go/NaCl layout); the public half
  must match the seed;
- the raw 32-byte seed (a binary file of exactly 32 bytes);
- a CometBFT `node_key.json` / `priv_validator_key.json` style JSON object with
  `priv_key.value` holding Base64 of the 64-byte Go key.

Rules: the file must be a regular file that only its owner can read (no group
or world bits), else KeyFileError with the chmod fix. A new key file is created
with `os.open(O_CREAT | O_EXCL, 0o600)`, never chmod-ed afterwards, never
overwritten, and fsync-ed together with its directory.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from pathlib import Path

from kms.errors import KeyFileError
from kms.keyfile import COMETBFT_PRIVKEY_TYPE, read_secret_file, write_secret_file
from kms.pubkey import ED25519_SEED_LEN, public_key_from_seed

_MAX_FILE_LEN = 4096  # identity files are tiny; refuse to slurp anything big


def _seed_from_64(path: Path, raw: bytes) -> bytes:
    seed, pub = raw[:ED25519_SEED_LEN], raw[ED25519_SEED_LEN:]
    if public_key_from_seed(seed) != pub:
        raise KeyFileError(f"{path}: the public half of the 64-byte key does not match its seed")
    return seed


def _decode_b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_identity_key(path: Path, data: bytes) -> bytes:
    """Decode the contents of an identity key file to the 32-byte seed (pure)."""
    if not data.strip():
        raise KeyFileError(f"{path}: file is empty (expected Base64 of a 32-byte Ed25519 seed)")
    if len(data) == ED25519_SEED_LEN and _decode_b64_bytes(data) is None:
        return data  # raw binary seed
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(
            f"{path}: not a key file (expected Base64 of a 32-byte Ed25519 seed)"
        ) from None
    stripped = text.strip()
    if stripped.startswith("{"):
        return _seed_from_json(path, stripped)
    raw = _decode_b64(stripped)
    if raw is None:
        raise KeyFileError(f"{path}: not valid Base64 (expected Base64 of a 32-byte Ed25519 seed)")
    if len(raw) == ED25519_SEED_LEN:
        return raw
    if len(raw) == 2 * ED25519_SEED_LEN:
        return _seed_from_64(path, raw)
    raise KeyFileError(
        f"{path}: decodes to {len(raw)} bytes; expected a 32-byte Ed25519 seed (or 64-byte key)"
    )


def _decode_b64_bytes(data: bytes) -> bytes | None:
    try:
        return _decode_b64(data.decode("ascii"))
    except UnicodeDecodeError:
        return None


def _seed_from_json(path: Path, text: str) -> bytes:
    try:
        doc = json.loads(text)
        priv = doc["priv_key"]
        kind, value = priv["type"], priv["value"]
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(f"{path}: JSON key file without priv_key.type/priv_key.value") from None
    if kind != COMETBFT_PRIVKEY_TYPE or not isinstance(value, str):
        raise KeyFileError(f"{path}: priv_key.type is {kind!r}; expected {COMETBFT_PRIVKEY_TYPE}")
    raw = _decode_b64(value)
    if raw is None or len(raw) != 2 * ED25519_SEED_LEN:
        raise KeyFileError(f"{path}: priv_key.value is not Base64 of a 64-byte Ed25519 key")
    return _seed_from_64(path, raw)


def load_identity_key(path: Path) -> bytes:
    """Read an identity key file and return the 32-byte Ed25519 seed.

    Raises KeyFileError (missing, unreadable, permissive mode, malformed).
    """
    return parse_identity_key(path, read_secret_file(path, max_len=_MAX_FILE_LEN))


def identity_public_key(seed: bytes) -> bytes:
    """The 32-byte Ed25519 public key of an identity seed."""
    if len(seed) != ED25519_SEED_LEN:
        raise ValueError("identity seed must be 32 bytes")
    return public_key_from_seed(seed)


def write_identity_key(
    path: Path,
    seed: bytes | None = None,
    *,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """Create a new identity key file (Base64 seed, mode 0600); return the seed.

    `seed` writes a given seed; otherwise one is drawn from `randbytes`.
    Refuses (KeyFileError) when the file already exists.
    """
    if seed is None:
        seed = randbytes(ED25519_SEED_LEN)
    if len(seed) != ED25519_SEED_LEN:
        raise ValueError("identity seed must be 32 bytes")
    write_secret_file(path, base64.b64encode(seed))
    return seed
