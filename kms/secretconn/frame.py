"""SecretConnection plaintext frames (PRIVVAL.md §1.4), pure and without crypto.

Owns the 1028-byte plaintext frame layout: a little-endian u32 length `n`, `n` payload
bytes, `1024 - n` padding bytes; and the split of one message into 1024-byte chunks.

Rules:
- A frame carries at most 1024 payload bytes; a length above 1024 is a FrameError.
- We never build a zero-length frame (an empty frame desynchronises Go's privval reader);
  an empty message produces no frames at all. A received zero-length frame is accepted
  and yields nothing (Go's reader does the same).
- Padding content is ignored on receive; we zero-pad on send.

Never touches: keys, nonces, AEAD, sockets.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from kms.errors import FrameError

__all__ = [
    "DATA_LEN_SIZE",
    "DATA_MAX_SIZE",
    "FRAME_SIZE",
    "SEALED_FRAME_SIZE",
    "TAG_SIZE",
    "chunks",
    "decode_frame",
    "encode_frame",
]

DATA_LEN_SIZE = 4
DATA_MAX_SIZE = 1024
FRAME_SIZE = DATA_LEN_SIZE + DATA_MAX_SIZE  # 1028
TAG_SIZE = 16
SEALED_FRAME_SIZE = FRAME_SIZE + TAG_SIZE  # 1044

_LEN = struct.Struct("<I")
_ZERO_PADDING = bytes(DATA_MAX_SIZE)


def encode_frame(payload: bytes | memoryview) -> bytes:
    """Build one zero-padded 1028-byte plaintext frame around 1..1024 payload bytes."""
    n = len(payload)
    if not 0 < n <= DATA_MAX_SIZE:
        raise FrameError(f"frame payload must be 1..{DATA_MAX_SIZE} bytes, got {n}")
    return b"".join((_LEN.pack(n), payload, _ZERO_PADDING[: DATA_MAX_SIZE - n]))


def decode_frame(frame: bytes | memoryview) -> memoryview:
    """Return the payload of a 1028-byte plaintext frame (padding ignored)."""
    if len(frame) != FRAME_SIZE:
        raise FrameError(f"plaintext frame must be {FRAME_SIZE} bytes, got {len(frame)}")
    (n,) = _LEN.unpack_from(frame, 0)
    if n > DATA_MAX_SIZE:
        raise FrameError(f"frame length {n} exceeds {DATA_MAX_SIZE}")
    return memoryview(frame)[DATA_LEN_SIZE : DATA_LEN_SIZE + n]


def chunks(data: bytes | bytearray | memoryview) -> Iterator[memoryview]:
    """Cut one message into 1024-byte pieces (the last may be shorter); nothing for b""."""
    view = memoryview(data)
    for start in range(0, len(view), DATA_MAX_SIZE):
        yield view[start : start + DATA_MAX_SIZE]
