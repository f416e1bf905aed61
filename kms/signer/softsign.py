"""Software Ed25519 signer (testnets, CI, demos): a key held in process memory.

Owns: `SoftSigner` and loading it from a key file (`load_softsign`). The key
object is built once; signing is a few tens of microseconds, so it runs inline
on the event loop. Never touches devices, sockets or double-sign state.

Key files (checked for mode 0600 by `kms.keyfile.read_secret_file`):
- `base64`: the base64 of
  * a 32-byte Ed25519 seed (what tmkms and `kms keygen --softsign` write);
  * 64 bytes: seed || public key (the libsodium/Go keypair form; the public half
    must match the seed), or else tmkms's "expanded" key: SHA-512(seed) with the
    scalar in little-endian (tmkms reads 64-byte files that way);
  * 96 bytes: a YubiHSM2 legacy wrap body (big-endian scalar || prefix || public
    key), which tmkms also accepts; the public key must match the scalar.
- `json`: CometBFT's `priv_validator_key.json`.
Expanded keys sign with libsodium's scalar primitives (RFC 8032 §5.1.6 from the
expanded secret); the result is byte-identical to seed-based signing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from nacl import bindings as sodium

from kms.errors import KeyFileError
from kms.keyfile import decode_base64_key, read_priv_validator_key, read_secret_file
from kms.pubkey import public_key_from_seed
from kms.signer.base import Health, Signature, Signer

KeyFileFormat = Literal["base64", "json"]


def _reduce(data: bytes) -> bytes:
    """Reduce a little-endian integer (up to 64 bytes) modulo the group order L."""
    return bytes(sodium.crypto_core_ed25519_scalar_reduce(data.ljust(64, b"\0")))


def _clamp(scalar_le: bytes) -> bytes:
    b = bytearray(scalar_le)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return bytes(b)


class SoftSigner(Signer):
    """An Ed25519 key in memory. `SoftSigner(seed)`; `SoftSigner.from_expanded(h)`."""

    def __init__(self, seed: bytes, *, name: str = "softsign") -> None:
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
        public_key, secret = sodium.crypto_sign_seed_keypair(seed)  # secret: seed || public
        self.name = name
        self._public_key = bytes(public_key)
        # libsodium's crypto_sign directly: SigningKey.sign wraps the same call in a
        # SignedMessage object per signature (about 6 us more, on every request)
        crypto_sign = sodium.crypto_sign
        self._sign: Callable[[bytes], bytes] = lambda m: crypto_sign(m, secret)[:64]

    @classmethod
    def from_expanded(cls, expanded: bytes, *, name: str = "softsign") -> SoftSigner:
        """A signer from SHA-512(seed) (scalar little-endian || prefix), seed unknown."""
        if len(expanded) != 64:
            raise ValueError("an expanded Ed25519 key is 64 bytes")
        scalar = _reduce(_clamp(expanded[:32]))
        prefix = expanded[32:]
        public_key = bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(scalar))

        def sign(message: bytes) -> bytes:
            r = _reduce(hashlib.sha512(prefix + message).digest())
            big_r = bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(r))
            k = _reduce(hashlib.sha512(big_r + public_key + message).digest())
            s = sodium.crypto_core_ed25519_scalar_add(
                r, sodium.crypto_core_ed25519_scalar_mul(k, scalar)
            )
            return big_r + bytes(s)

        self = cls.__new__(cls)
        self.name = name
        self._public_key = public_key
        self._sign = sign
        return self

    @property
    def public_key(self) -> bytes:
        return self._public_key

    async def sign_traced(self, message: bytes, *, timeout: float | None = None) -> Signature:
        return Signature(self._sign(message), self.name)

    def health(self) -> Health:
        return Health(True, "software key")

    def __repr__(self) -> str:
        return f"SoftSigner(name={self.name!r}, public_key={self._public_key.hex()})"


def _from_base64_bytes(path: Path, key: bytes) -> SoftSigner:
    if len(key) == 32:
        return SoftSigner(key)
    if len(key) == 64:
        if public_key_from_seed(key[:32]) == key[32:]:
            return SoftSigner(key[:32])
        return SoftSigner.from_expanded(key)
    if len(key) == 96:
        signer = SoftSigner.from_expanded(key[:32][::-1] + key[32:64])
        if signer.public_key != key[64:]:
            raise KeyFileError(f"{path}: 96-byte key's public key does not match its scalar")
        return signer
    raise KeyFileError(
        f"{path}: decoded key is {len(key)} bytes; expected a 32-byte Ed25519 seed "
        "(or 64/96-byte keypair/expanded forms)"
    )


def load_softsign(path: Path | str, key_format: KeyFileFormat = "base64") -> SoftSigner:
    """Load a software key file; refuses permissive modes and malformed content."""
    path = Path(path)
    if key_format == "json":
        return SoftSigner(read_priv_validator_key(path).seed)
    if key_format == "base64":
        return _from_base64_bytes(path, decode_base64_key(path, read_secret_file(path)))
    raise KeyFileError(f"{path}: unknown key_format {key_format!r} (expected base64 or json)")
