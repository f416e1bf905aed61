"""Key files a key command reads or writes: kms wrapped backups and the key sources of `kms import`.

Owns: the kms wrapped-backup document (`kms-wrapped-v1`: key id, wrap key id,
public key, address and the device's wrap blob, JSON, 0600), recognising what
an import file holds (a wrapped backup, a tmkms / yubihsm-shell wrap blob via
kms/hsm/backup.py, a CometBFT `priv_validator_key.json`, or a base64 seed of 32
bytes or 64 = seed || public key), and the refuse-to-overwrite check for output
files. The key id and public key are recorded in a backup because the blob
itself is encrypted and cannot be checked before import. Never talks to a
device.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kms.errors import KeyCommandError
from kms.hsm.backup import RawWrapped, detect_raw_wrapped
from kms.keyfile import check_private_mode, decode_base64_key, parse_priv_validator_key
from kms.pubkey import public_key_from_seed, validator_address

WRAPPED_FORMAT = "kms-wrapped-v1"


@dataclass(frozen=True, slots=True)
class WrappedBackup:
    key_id: int
    wrap_key_id: int
    public_key: bytes
    blob: bytes

    def to_json(self) -> bytes:
        doc = {
            "format": WRAPPED_FORMAT,
            "key_id": self.key_id,
            "wrap_key_id": self.wrap_key_id,
            "public_key": base64.b64encode(self.public_key).decode(),
            "address": validator_address(self.public_key),
            "wrapped": base64.b64encode(self.blob).decode(),
        }
        return (json.dumps(doc, indent=2) + "\n").encode()


def parse_wrapped_backup(path: Path, doc: dict[str, Any]) -> WrappedBackup:
    try:
        key_id, wrap_id = int(doc["key_id"]), int(doc["wrap_key_id"])
        public_key = base64.b64decode(doc["public_key"], validate=True)
        blob = base64.b64decode(doc["wrapped"], validate=True)
    except (KeyError, ValueError, TypeError, binascii.Error):
        raise KeyCommandError(f"{path}: malformed {WRAPPED_FORMAT} backup") from None
    if len(public_key) != 32 or len(blob) < 13 + 16 + 59:
        raise KeyCommandError(f"{path}: malformed {WRAPPED_FORMAT} backup (bad lengths)")
    return WrappedBackup(key_id, wrap_id, public_key, blob)


@dataclass(frozen=True, slots=True)
class SeedSource:
    seed: bytes

    @property
    def public_key(self) -> bytes:
        return public_key_from_seed(self.seed)


KeySource = SeedSource | WrappedBackup | RawWrapped


def read_key_source(path: Path) -> KeySource:
    """A priv_validator_key.json, a base64 seed file, a kms wrapped backup, or a raw wrap
    blob as tmkms (`yubihsm keys export`) and yubihsm-shell (`get-wrapped`) write it."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise KeyCommandError(f"{path}: cannot read: {e.strerror or e}") from None
    doc: Any = None
    if raw.lstrip().startswith(b"{"):
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise KeyCommandError(f"{path}: not valid JSON ({e})") from None
    if isinstance(doc, dict) and doc.get("format") == WRAPPED_FORMAT:
        return parse_wrapped_backup(path, doc)
    if doc is None and (wrapped := detect_raw_wrapped(raw)) is not None:
        return wrapped  # encrypted under the wrap key: no clear secret, no mode check
    check_private_mode(path)  # everything else holds the secret in the clear
    if doc is not None:
        return SeedSource(parse_priv_validator_key(path, raw).seed)
    key = decode_base64_key(path, raw)
    if len(key) == 32:
        return SeedSource(key)
    if len(key) == 64 and public_key_from_seed(key[:32]) == key[32:]:
        return SeedSource(key[:32])
    raise KeyCommandError(
        f"{path}: decoded key is {len(key)} bytes; a device import needs a 32-byte seed "
        "(or 64 bytes seed || public key), a priv_validator_key.json or a wrapped backup"
    )


def check_new_file(path: Path) -> None:
    if path.exists():
        raise KeyCommandError(f"{path}: already exists; refusing to overwrite")
    if not path.parent.is_dir():
        raise KeyCommandError(f"{path}: directory {path.parent} does not exist")
