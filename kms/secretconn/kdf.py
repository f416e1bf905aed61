"""SecretConnection key schedule: HKDF-SHA256 session keys and the Merlin challenge.

Owns (PRIVVAL.md §1.2):
- `derive_secrets(dh, loc_is_least)`: okm = HKDF-SHA256(salt empty, ikm = dh,
  info = "TENDERMINT_SECRET_CONNECTION_KEY_AND_CHALLENGE_GEN", L = 96); the side whose
  ephemeral key sorts lower receives with okm[0:32] and sends with okm[32:64], the other
  side the reverse. okm[64:96] (the pre-Merlin challenge) is returned only so the golden
  file's fifth column can be checked; it is never used as a secret.
- `sort_ephemeral_keys(loc, rem)`: memcmp ordering of the two ephemeral public keys.
- `merlin_challenge(lo, hi, dh)`: the 32-byte challenge each side signs.

The keys depend only on the DH secret, never on the transcript.
Never touches: sockets, identity keys, ciphers, the handshake state machine.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kms.secretconn.merlin import Transcript

__all__ = [
    "HKDF_INFO",
    "TRANSCRIPT_LABEL",
    "SessionSecrets",
    "derive_secrets",
    "merlin_challenge",
    "sort_ephemeral_keys",
]

HKDF_INFO = b"TENDERMINT_SECRET_CONNECTION_KEY_AND_CHALLENGE_GEN"
TRANSCRIPT_LABEL = b"TENDERMINT_SECRET_CONNECTION_TRANSCRIPT_HASH"
_LABEL_LOWER = b"EPHEMERAL_LOWER_PUBLIC_KEY"
_LABEL_UPPER = b"EPHEMERAL_UPPER_PUBLIC_KEY"
_LABEL_DH = b"DH_SECRET"
_LABEL_CHALLENGE = b"SECRET_CONNECTION_MAC"
_KEY_LEN = 32


@dataclass(frozen=True, slots=True)
class SessionSecrets:
    """The two directional ChaCha20-Poly1305 keys of one side, plus the legacy okm tail."""

    recv_key: bytes
    send_key: bytes
    legacy_challenge: bytes  # okm[64:96]; unused by the protocol, kept for the golden vectors

    def __repr__(self) -> str:  # never print key material
        return "SessionSecrets(<redacted>)"


def derive_secrets(dh_secret: bytes, loc_is_least: bool) -> SessionSecrets:
    """Derive this side's receive and send keys from the X25519 shared secret."""
    if len(dh_secret) != _KEY_LEN:
        raise ValueError("the DH secret must be 32 bytes")
    okm = HKDF(algorithm=hashes.SHA256(), length=96, salt=None, info=HKDF_INFO).derive(dh_secret)
    first, second, legacy = okm[0:32], okm[32:64], okm[64:96]
    # (loc_is_least) -> (recv, send)
    recv, send = (first, second) if loc_is_least else (second, first)
    return SessionSecrets(recv_key=recv, send_key=send, legacy_challenge=legacy)


def sort_ephemeral_keys(local: bytes, remote: bytes) -> tuple[bytes, bytes, bool]:
    """Return (lower, upper, local_is_least) under unsigned lexicographic (memcmp) order."""
    if local < remote:
        return local, remote, True
    return remote, local, False


@functools.cache
def _base_transcript() -> Transcript:
    # Every SecretConnection transcript starts with the same label: build that prefix once.
    return Transcript(TRANSCRIPT_LABEL)


def merlin_challenge(lower: bytes, upper: bytes, dh_secret: bytes) -> bytes:
    """The 32-byte value both sides sign with their identity keys."""
    transcript = _base_transcript().clone()
    transcript.append_message(_LABEL_LOWER, lower)
    transcript.append_message(_LABEL_UPPER, upper)
    transcript.append_message(_LABEL_DH, dh_secret)
    return transcript.challenge_bytes(_LABEL_CHALLENGE, 32)
