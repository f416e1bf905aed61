"""A hand-driven SecretConnection peer for negative tests.

It runs the protocol from the other side step by step, so a test can send whatever it
likes as the first message or as the (correctly encrypted) AuthSig payload.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kms.secretconn.handshake import encode_auth_sig, encode_ephemeral_message
from kms.secretconn.kdf import derive_secrets, merlin_challenge, sort_ephemeral_keys
from kms.secretconn.stream import SecretStream


def raw(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class RawPeer:
    def __init__(self, identity_seed: bytes | None = None) -> None:
        self.identity = Ed25519PrivateKey.from_private_bytes(identity_seed or os.urandom(32))
        self.identity_public = raw(self.identity)
        self.ephemeral = X25519PrivateKey.from_private_bytes(os.urandom(32))
        self.ephemeral_public = raw(self.ephemeral)
        self.stream: SecretStream | None = None
        self.challenge = b""

    def first_message(self) -> bytes:
        return encode_ephemeral_message(self.ephemeral_public)

    def on_first_message(self, message: bytes) -> None:
        remote = message[3:35]
        dh = self.ephemeral.exchange(X25519PublicKey.from_public_bytes(remote))
        lower, upper, least = sort_ephemeral_keys(self.ephemeral_public, remote)
        secrets = derive_secrets(dh, least)
        self.challenge = merlin_challenge(lower, upper, dh)
        self.stream = SecretStream(secrets.send_key, secrets.recv_key)

    def honest_auth_sig(self) -> bytes:
        return encode_auth_sig(self.identity_public, self.identity.sign(self.challenge))

    def seal(self, payload: bytes) -> bytes:
        assert self.stream is not None
        return self.stream.seal(payload)
