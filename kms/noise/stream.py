"""The sans-IO Noise transport stream after the handshake (NOISE.md §4).

Owns: the BE16 length-prefixed frame layer (shared with the handshake messages), sealing
one outgoing message into frames of at most MAX_PLAINTEXT bytes (`seal`), and opening
incoming frames fed in any chunking (`receive_data`).

Rules:
- Frame = BE16(L) || ChaCha20-Poly1305(k, nonce(n), ad = empty, plaintext), L <= 65535,
  so at most 65519 plaintext bytes per frame. We never send an empty frame (it corrupts
  cometbft's one-byte uvarint reader); an empty received frame yields nothing.
- A frame shorter than the tag is malformed. Incoming bytes are held only until one
  whole frame is present: at most 2 + 65535 bytes are ever buffered.
- The first failure poisons the stream: every later call raises FrameError.

Never touches: sockets, asyncio, the handshake, privval message boundaries.
"""

from __future__ import annotations

import struct

from kms.errors import FrameError
from kms.noise.state import TAG_LEN, CipherState

__all__ = ["LEN_PREFIX", "MAX_FRAME", "MAX_PLAINTEXT", "FrameBuffer", "NoiseStream", "frame_bytes"]

LEN_PREFIX = 2
MAX_FRAME = 0xFFFF
MAX_PLAINTEXT = MAX_FRAME - TAG_LEN  # 65519
_BE16 = struct.Struct(">H")


def frame_bytes(body: bytes) -> bytes:
    """BE16(len) || body, for a body of at most 65535 bytes."""
    if len(body) > MAX_FRAME:
        raise FrameError(f"Noise frame body of {len(body)} bytes exceeds {MAX_FRAME}")
    return _BE16.pack(len(body)) + body


class FrameBuffer:
    """Cuts BE16 length-prefixed frames out of a byte stream; holds at most one frame."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def need(self) -> int:
        """Bytes still missing from the frame being assembled (header first)."""
        held = len(self._buf)
        if held < LEN_PREFIX:
            return LEN_PREFIX - held
        return max(0, LEN_PREFIX + int(_BE16.unpack_from(self._buf)[0]) - held)

    def next_frame(self) -> bytes | None:
        """The next complete frame body, or None when more bytes are needed."""
        buf = self._buf
        if len(buf) < LEN_PREFIX:
            return None
        (size,) = _BE16.unpack_from(buf)
        end = LEN_PREFIX + size
        if len(buf) < end:
            return None
        body = bytes(buf[LEN_PREFIX:end])
        del buf[:end]
        return body

    def take_rest(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


class NoiseStream:
    """Sealing and opening of Noise transport frames, without I/O."""

    __slots__ = ("_failed", "_frames", "_recv", "_send")

    def __init__(self, send: CipherState, recv: CipherState) -> None:
        self._send = send
        self._recv = recv
        self._frames = FrameBuffer()
        self._failed = False

    @property
    def poisoned(self) -> bool:
        return self._failed

    @property
    def buffered(self) -> int:
        """Wire bytes held while waiting for the rest of a frame (<= 65537)."""
        return len(self._frames)

    @property
    def send_nonce(self) -> int:
        return self._send.nonce

    @property
    def recv_nonce(self) -> int:
        return self._recv.nonce

    def _check(self) -> None:
        if self._failed:
            raise FrameError("Noise connection failed earlier; it must be closed")

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """Wire bytes for one message (empty message: nothing, never an empty frame)."""
        self._check()
        view = memoryview(data)
        try:
            return b"".join(
                frame_bytes(self._send.encrypt(b"", view[i : i + MAX_PLAINTEXT]))
                for i in range(0, len(view), MAX_PLAINTEXT)
            )
        except FrameError:
            self._failed = True
            raise

    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed wire bytes; return the plaintext of every frame they completed."""
        self._check()
        out = bytearray()
        # Feed at most one frame's worth at a time so the buffer never exceeds one frame.
        view = memoryview(bytes(data))
        pos = 0
        try:
            while True:
                frame = self._frames.next_frame()
                if frame is None:
                    if pos >= len(view):
                        break
                    need = self._frames.need()
                    self._frames.feed(view[pos : pos + need])
                    pos += need
                    continue
                if len(frame) < TAG_LEN:
                    raise FrameError(f"Noise frame of {len(frame)} bytes is shorter than its tag")
                out += self._recv.decrypt(b"", frame)
        except FrameError:
            self._failed = True
            self._frames = FrameBuffer()
            raise
        return bytes(out)
