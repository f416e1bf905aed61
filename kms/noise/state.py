"""The Noise XX pattern (Noise_XX_25519_ChaChaPoly_SHA256), sans-IO, both roles (NOISE.md §2.2).

Owns: CipherState, SymmetricState (MixHash, MixKey, HKDF, EncryptAndHash, Split) and the
three XX messages `-> e` / `<- e, ee, s, es` / `-> s, se` for the initiator and the
responder, with any prologue and payload. This is the plain Noise Protocol Framework
(revision 34) so it can be checked against the published cacophony test vectors; the
libp2p payload, framing and peer pinning live in `kms.noise.handshake`.

Rules:
- The protocol name is exactly HASHLEN (32) bytes, so h = ck = name, unhashed.
- Nonce = 4 zero bytes || little-endian u64; 2**64 - 1 is reserved (never used).
- A DH whose output is all zero (low-order remote key) is refused (Go refuses it too).
- Every failure raises HandshakeError (FrameError for the transport ciphers); a state
  that failed is not used again (the caller drops the connection).

Never touches: sockets, framing, identity keys, the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kms.errors import FrameError, HandshakeError

__all__ = [
    "DH_LEN",
    "PROTOCOL_NAME",
    "TAG_LEN",
    "CipherState",
    "XXHandshake",
    "x25519_public",
]

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
HASH_LEN = 32
DH_LEN = 32
TAG_LEN = 16
_MAX_NONCE = (1 << 64) - 1  # reserved by the spec: the last usable nonce is 2**64 - 2
_NONCE = struct.Struct("<4xQ")
_ZERO = bytes(DH_LEN)


def x25519_public(secret: bytes) -> bytes:
    """The X25519 public key for a 32-byte private key."""
    return (
        X25519PrivateKey.from_private_bytes(secret)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def _dh(secret: X25519PrivateKey, remote: bytes) -> bytes:
    try:
        out = secret.exchange(X25519PublicKey.from_public_bytes(remote))
    except ValueError:  # OpenSSL refuses an all-zero shared secret itself
        out = _ZERO
    if hmac.compare_digest(out, _ZERO):
        raise HandshakeError("peer Noise key is of low order (all-zero X25519 output)")
    return out


def _hkdf(ck: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    temp = hmac.digest(ck, ikm, "sha256")
    o1 = hmac.digest(temp, b"\x01", "sha256")
    o2 = hmac.digest(temp, o1 + b"\x02", "sha256")
    return o1, o2


class CipherState:
    """One direction's ChaCha20-Poly1305 key and nonce counter."""

    __slots__ = ("_aead", "_n", "_poisoned")

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = None if key is None else ChaCha20Poly1305(key)
        self._n = 0
        self._poisoned = False

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    @property
    def nonce(self) -> int:
        return self._n

    def _next(self) -> bytes:
        if self._poisoned:
            raise FrameError("Noise cipher failed earlier; the connection is unusable")
        if self._n >= _MAX_NONCE:
            self._poisoned = True
            raise FrameError("Noise nonce exhausted; refusing to reuse a nonce")
        return _NONCE.pack(self._n)

    def encrypt(self, ad: bytes, plaintext: bytes | memoryview) -> bytes:
        if self._aead is None:
            return bytes(plaintext)
        out = self._aead.encrypt(self._next(), bytes(plaintext), ad or None)
        self._n += 1
        return out

    def decrypt(self, ad: bytes, ciphertext: bytes | memoryview) -> bytes:
        if self._aead is None:
            return bytes(ciphertext)
        nonce = self._next()
        try:
            out = self._aead.decrypt(nonce, bytes(ciphertext), ad or None)
        except InvalidTag:
            self._poisoned = True
            raise FrameError("Noise message failed to authenticate") from None
        self._n += 1
        return out

    def __repr__(self) -> str:  # never print key material
        return f"CipherState(nonce={self._n}, keyed={self._aead is not None})"


class _Symmetric:
    __slots__ = ("ck", "cs", "h")

    def __init__(self, prologue: bytes) -> None:
        self.h = PROTOCOL_NAME  # exactly HASHLEN: used verbatim
        self.ck = PROTOCOL_NAME
        self.cs = CipherState()
        self.mix_hash(prologue)

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, k = _hkdf(self.ck, ikm)
        self.cs = CipherState(k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        c = self.cs.encrypt(self.h, plaintext)
        self.mix_hash(c)
        return c

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        try:
            p = self.cs.decrypt(self.h, ciphertext)
        except FrameError as e:
            raise HandshakeError(f"Noise handshake message failed to authenticate ({e})") from None
        self.mix_hash(ciphertext)
        return p

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = _hkdf(self.ck, b"")
        return CipherState(k1), CipherState(k2)


class XXHandshake:
    """One side of an XX handshake: call write/read in message order, then `split()`.

    Initiator: write_message(1), read_message(2), write_message(3).
    Responder: read_message(1), write_message(2), read_message(3).
    """

    def __init__(
        self,
        *,
        initiator: bool,
        static_secret: bytes,
        ephemeral_secret: bytes,
        prologue: bytes = b"",
    ) -> None:
        if len(static_secret) != DH_LEN or len(ephemeral_secret) != DH_LEN:
            raise ValueError("X25519 private keys are 32 bytes")
        self.initiator = initiator
        self._s = X25519PrivateKey.from_private_bytes(static_secret)
        self._e = X25519PrivateKey.from_private_bytes(ephemeral_secret)
        self.static_public = x25519_public(static_secret)
        self.ephemeral_public = x25519_public(ephemeral_secret)
        self.remote_static: bytes | None = None
        self._re: bytes | None = None
        self._ss = _Symmetric(prologue)
        self._step = 0  # messages processed so far (0..3)

    @property
    def complete(self) -> bool:
        return self._step == 3

    @property
    def handshake_hash(self) -> bytes:
        return self._ss.h

    def _expect(self, step: int, writing: bool) -> None:
        ours = (step % 2 == 0) == self.initiator  # initiator writes messages 1 and 3
        if self._step != step or ours != writing:
            raise HandshakeError("Noise handshake message out of order")

    def write_message(self, payload: bytes) -> bytes:
        ss = self._ss
        if self._step == 0:
            self._expect(0, True)
            ss.mix_hash(self.ephemeral_public)
            out = self.ephemeral_public + ss.encrypt_and_hash(payload)
        elif self._step == 1:
            self._expect(1, True)
            assert self._re is not None
            ss.mix_hash(self.ephemeral_public)
            ss.mix_key(_dh(self._e, self._re))  # ee
            c_s = ss.encrypt_and_hash(self.static_public)
            ss.mix_key(_dh(self._s, self._re))  # es (responder side)
            out = self.ephemeral_public + c_s + ss.encrypt_and_hash(payload)
        else:
            self._expect(2, True)
            assert self._re is not None
            c_s = ss.encrypt_and_hash(self.static_public)
            ss.mix_key(_dh(self._s, self._re))  # se (initiator side)
            out = c_s + ss.encrypt_and_hash(payload)
        self._step += 1
        return out

    def read_message(self, message: bytes) -> bytes:
        ss = self._ss
        if self._step == 0:
            self._expect(0, False)
            if len(message) < DH_LEN:
                raise HandshakeError(f"Noise message 1 is {len(message)} bytes, too short")
            self._re = message[:DH_LEN]
            ss.mix_hash(self._re)
            payload = ss.decrypt_and_hash(message[DH_LEN:])
        elif self._step == 1:
            self._expect(1, False)
            if len(message) < 2 * DH_LEN + 2 * TAG_LEN:
                raise HandshakeError(f"Noise message 2 is {len(message)} bytes, too short")
            self._re = message[:DH_LEN]
            if hmac.compare_digest(self._re, self.ephemeral_public):
                raise HandshakeError("peer sent our own ephemeral key back")
            ss.mix_hash(self._re)
            ss.mix_key(_dh(self._e, self._re))  # ee
            end_s = 2 * DH_LEN + TAG_LEN
            self.remote_static = ss.decrypt_and_hash(message[DH_LEN:end_s])
            ss.mix_key(_dh(self._e, self.remote_static))  # es (initiator side)
            payload = ss.decrypt_and_hash(message[end_s:])
        else:
            self._expect(2, False)
            if len(message) < DH_LEN + 2 * TAG_LEN:
                raise HandshakeError(f"Noise message 3 is {len(message)} bytes, too short")
            assert self._re is not None
            end_s = DH_LEN + TAG_LEN
            self.remote_static = ss.decrypt_and_hash(message[:end_s])
            ss.mix_key(_dh(self._e, self.remote_static))  # se (responder side)
            payload = ss.decrypt_and_hash(message[end_s:])
        self._step += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """(send, receive) cipher states for this side; only after the third message."""
        if not self.complete:
            raise HandshakeError("Noise handshake not complete")
        c1, c2 = self._ss.split()
        return (c1, c2) if self.initiator else (c2, c1)
