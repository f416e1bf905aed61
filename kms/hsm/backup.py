"""Wrapped-key files as tmkms and yubihsm-shell write them, recognised by content.

Owns: recognising a raw wrap blob file (`tmkms yubihsm keys export` and
`yubihsm-shell -a get-wrapped` both write the device's EXPORT_WRAPPED answer,
nonce(13) || AES-CCM ciphertext || tag(16), base64-encoded; yubihsm-shell can
also write it as binary), and writing one in that form. The blob is encrypted:
its key id and public key are only known once a device with the wrap key has
imported it. Never talks to a device.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

NONCE_LEN = 13
TAG_LEN = 16
HEADER_LEN = 59  # the wrapped object's header (YUBIHSM.md §4.13)
ED25519_BODY = 96  # legacy body: scalar || prefix || public key
MIN_BLOB = NONCE_LEN + HEADER_LEN + TAG_LEN
MAX_BLOB = 4096


@dataclass(frozen=True, slots=True)
class RawWrapped:
    """A wrap blob without kms's metadata (tmkms / yubihsm-shell)."""

    blob: bytes
    origin: str  # "base64" or "binary", for messages

    @property
    def could_be_ed25519(self) -> bool:
        return len(self.blob) - NONCE_LEN - TAG_LEN - HEADER_LEN in (
            ED25519_BODY,
            ED25519_BODY + 32,
        )


def detect_raw_wrapped(raw: bytes) -> RawWrapped | None:
    """A raw wrap blob, or None when `raw` is something else (seed, JSON, ...)."""
    text = b"".join(raw.split())
    if text and all(
        c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=" for c in text
    ):
        try:
            blob = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
        return RawWrapped(blob, "base64") if MIN_BLOB <= len(blob) <= MAX_BLOB else None
    if raw[:1] not in (b"{", b"[") and MIN_BLOB <= len(raw) <= MAX_BLOB:
        try:
            raw.decode("ascii")
        except UnicodeDecodeError:
            return RawWrapped(raw, "binary")
    return None


def tmkms_file(blob: bytes) -> bytes:
    """What `tmkms yubihsm keys export` writes: the blob in base64."""
    return base64.b64encode(blob) + b"\n"
