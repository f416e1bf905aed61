"""Directional ChaCha20-Poly1305 frame ciphers for SecretConnection (PRIVVAL.md §1.4).

Owns one direction's AEAD state: the key (one `ChaCha20Poly1305` object for the life of
the direction, never one per frame), the 64-bit frame counter and the poisoned flag.

Rules:
- Nonce = 4 zero bytes || little-endian u64 counter; the counter starts at 0 and is
  incremented after every frame. Counter 2**64 - 1 is the last usable nonce; the next
  call raises FrameError instead of wrapping (reusing a nonce would break the cipher).
- Empty associated data; sealed frame = 1028 ciphertext bytes || 16-byte tag.
- The first failure (bad tag, bad length, nonce exhaustion) poisons the state: every
  later call raises FrameError, whatever its input. A stream is never resumed.

Never touches: sockets, the handshake, message boundaries above the frame.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from kms.errors import FrameError
from kms.secretconn.frame import SEALED_FRAME_SIZE, decode_frame, encode_frame

__all__ = ["MAX_NONCE_COUNTER", "RecvCipher", "SendCipher", "nonce_bytes"]

MAX_NONCE_COUNTER = (1 << 64) - 1
_NONCE = struct.Struct("<4xQ")


def nonce_bytes(counter: int) -> bytes:
    """The 12-byte nonce for a frame counter."""
    if not 0 <= counter <= MAX_NONCE_COUNTER:
        raise FrameError("nonce counter exhausted")
    return _NONCE.pack(counter)


class _DirectionState:
    __slots__ = ("_aead", "_counter", "_poisoned")

    def __init__(self, key: bytes, *, counter: int = 0) -> None:
        if len(key) != 32:
            raise ValueError("a ChaCha20-Poly1305 key is 32 bytes")
        if not 0 <= counter <= MAX_NONCE_COUNTER + 1:
            raise ValueError("counter out of range")
        self._aead = ChaCha20Poly1305(key)
        self._counter = counter
        self._poisoned = False

    @property
    def counter(self) -> int:
        """The counter the next frame will use."""
        return self._counter

    @property
    def poisoned(self) -> bool:
        return self._poisoned

    def _next_nonce(self) -> bytes:
        if self._poisoned:
            raise FrameError("cipher state failed earlier; the connection is unusable")
        if self._counter > MAX_NONCE_COUNTER:
            self._poisoned = True
            raise FrameError("nonce counter exhausted; refusing to reuse a nonce")
        return _NONCE.pack(self._counter)

    def __repr__(self) -> str:  # never print key material
        return f"{type(self).__name__}(counter={self._counter}, poisoned={self._poisoned})"


class SendCipher(_DirectionState):
    """Seals outgoing frames."""

    __slots__ = ()

    def seal_frame(self, payload: bytes | memoryview) -> bytes:
        """Frame 1..1024 payload bytes and seal them into 1044 wire bytes."""
        nonce = self._next_nonce()
        try:
            plaintext = encode_frame(payload)
        except FrameError:
            self._poisoned = True
            raise
        sealed = self._aead.encrypt(nonce, plaintext, None)
        self._counter += 1
        return sealed


class RecvCipher(_DirectionState):
    """Opens incoming frames."""

    __slots__ = ()

    def open_frame(self, sealed: bytes | memoryview) -> memoryview:
        """Authenticate and decrypt one 1044-byte frame; return its payload."""
        nonce = self._next_nonce()
        if len(sealed) != SEALED_FRAME_SIZE:
            self._poisoned = True
            raise FrameError(f"sealed frame must be {SEALED_FRAME_SIZE} bytes, got {len(sealed)}")
        try:
            plaintext = self._aead.decrypt(nonce, sealed, None)
        except InvalidTag:
            self._poisoned = True
            raise FrameError("frame failed to authenticate") from None
        try:
            payload = decode_frame(plaintext)
        except FrameError:
            self._poisoned = True
            raise
        self._counter += 1
        return payload
