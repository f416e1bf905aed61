"""The sans-IO SecretConnection byte stream after the handshake.

Owns: turning one outgoing message into sealed 1044-byte frames (`seal`), and turning
incoming ciphertext, fed in any chunking, into payload bytes (`receive_data`).

Rules:
- One `seal(data)` call = one privval message = ceil(len / 1024) frames; data from two
  calls never shares a frame; `seal(b"")` produces nothing (no zero-length frames).
- Incoming ciphertext is buffered only until a whole 1044-byte frame is present, so at
  most 1043 bytes are ever held between calls; frames are processed through a
  memoryview, never by repeated concatenation.
- The first failure in either direction poisons the whole stream: every later call
  raises FrameError. A stream that failed is closed, never resynchronised.

Never touches: sockets, asyncio, the handshake, privval message boundaries.
"""

from __future__ import annotations

from kms.errors import FrameError
from kms.secretconn.cipher import RecvCipher, SendCipher
from kms.secretconn.frame import DATA_MAX_SIZE, SEALED_FRAME_SIZE

__all__ = ["SecretStream"]


class SecretStream:
    """Sealing and opening of SecretConnection frames, without I/O."""

    __slots__ = ("_failed", "_inbuf", "_recv", "_send")

    def __init__(
        self,
        send_key: bytes,
        recv_key: bytes,
        *,
        send_counter: int = 0,
        recv_counter: int = 0,
    ) -> None:
        self._send = SendCipher(send_key, counter=send_counter)
        self._recv = RecvCipher(recv_key, counter=recv_counter)
        self._inbuf = bytearray()
        self._failed = False

    @property
    def poisoned(self) -> bool:
        """True once any frame failed; the stream then refuses all work."""
        return self._failed

    @property
    def send_counter(self) -> int:
        return self._send.counter

    @property
    def recv_counter(self) -> int:
        return self._recv.counter

    @property
    def buffered(self) -> int:
        """Ciphertext bytes held while waiting for the rest of a frame (always < 1044)."""
        return len(self._inbuf)

    def _check(self) -> None:
        if self._failed:
            raise FrameError("secret connection failed earlier; it must be closed")

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the wire bytes for one message (empty message: nothing)."""
        self._check()
        view = memoryview(data)
        size = len(view)
        if size == 0:
            return b""
        seal_frame = self._send.seal_frame
        try:
            if size <= DATA_MAX_SIZE:
                return seal_frame(view)
            return b"".join(
                [seal_frame(view[i : i + DATA_MAX_SIZE]) for i in range(0, size, DATA_MAX_SIZE)]
            )
        except FrameError:
            # Frames sealed before the failure are dropped with the exception: no
            # partial message ever reaches the wire.
            self._failed = True
            raise

    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed ciphertext; return the payload bytes of every frame it completed."""
        self._check()
        if not data:
            return b""
        if self._inbuf:
            self._inbuf += data
            source: bytes | bytearray | memoryview = self._inbuf
        else:
            source = data
        total = len(source)
        if total < SEALED_FRAME_SIZE:
            if source is not self._inbuf:
                self._inbuf += data
            return b""
        out = bytearray()
        open_frame = self._recv.open_frame
        offset = 0
        try:
            with memoryview(source) as view:
                while total - offset >= SEALED_FRAME_SIZE:
                    out += open_frame(view[offset : offset + SEALED_FRAME_SIZE])
                    offset += SEALED_FRAME_SIZE
                rest = bytes(view[offset:])
        except FrameError:
            self._failed = True
            self._inbuf = bytearray()
            raise
        self._inbuf = bytearray(rest)
        return bytes(out)
