"""The recovery phrase and every secret `kms hsm setup` derives from it.

Owns: generating the 24-word BIP-39 phrase (256 bits of entropy from the OS,
English wordlist and checksum from the `mnemonic` package, i.e. the published
BIP-39 spec), parsing it back (bad word or checksum is one clear error), and the
derivation of the wrap key and the role passwords. Never prints, stores or logs
a secret: callers decide what is shown, and the phrase is never written.

Derivation (version 1; changing it would make old phrases useless, so it never
changes; a new scheme gets a new version label):

    entropy  = the phrase's 32 bytes of BIP-39 entropy (not the BIP-39 seed)
    secret(label, n) = HKDF-SHA256(ikm=entropy, salt="kms-yubihsm-setup-v1",
                                   info=label, length=n)
    wrap key          = secret("wrap-key:1", 32)          AES-256-CCM wrap key, id 1
    role password (r) = hex(secret("auth-password:" + r, 32))    64 hex characters

Each label is distinct, so knowing one derived value tells nothing about the
others (HKDF outputs under different `info` are independent), and the same
phrase gives the same objects on any device, which is what lets a factory-reset
or new device be rebuilt from the phrase alone.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from mnemonic import Mnemonic

from kms.errors import RecoveryPhraseError

ENTROPY_BYTES = 32  # 24 words
WORDS = 24
SALT = b"kms-yubihsm-setup-v1"
WRAP_KEY_LABEL = "wrap-key:1"
PASSWORD_LABEL = "auth-password:"

_BIP39 = Mnemonic("english")


def wordlist() -> list[str]:
    return list(_BIP39.wordlist)


def new_entropy() -> bytes:
    return os.urandom(ENTROPY_BYTES)


def to_phrase(entropy: bytes) -> str:
    if len(entropy) != ENTROPY_BYTES:
        raise RecoveryPhraseError(f"entropy must be {ENTROPY_BYTES} bytes")
    return str(_BIP39.to_mnemonic(entropy))


def from_phrase(text: str) -> bytes:
    """The entropy behind a 24-word phrase; whitespace and case do not matter."""
    words = text.lower().split()
    if len(words) != WORDS:
        raise RecoveryPhraseError(f"a recovery phrase has {WORDS} words, got {len(words)}")
    known = set(_BIP39.wordlist)
    for i, w in enumerate(words, 1):
        if w not in known:
            raise RecoveryPhraseError(f"word {i} ({w!r}) is not in the BIP-39 English wordlist")
    phrase = " ".join(words)
    if not _BIP39.check(phrase):
        raise RecoveryPhraseError("recovery phrase checksum does not match (a word is wrong)")
    return bytes(_BIP39.to_entropy(phrase))


def _secret(entropy: bytes, label: str, length: int) -> bytes:
    if len(entropy) != ENTROPY_BYTES:
        raise RecoveryPhraseError(f"entropy must be {ENTROPY_BYTES} bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=SALT, info=label.encode())
    return hkdf.derive(entropy)


def wrap_key(entropy: bytes) -> bytes:
    return _secret(entropy, WRAP_KEY_LABEL, 32)


def role_password(entropy: bytes, role: str) -> str:
    return _secret(entropy, PASSWORD_LABEL + role, 32).hex()
