"""Protobuf base-128 varints, the one implementation every module uses.

Owns: encoding unsigned and signed (two's complement on 64 bits, as protobuf's
int64) varints, and reading an unsigned one back from a buffer. Used by the
privval framing and canonical sign bytes, the Celestia raw-bytes bytes, the
SecretConnection handshake and the Noise handshake payloads.

Errors follow the direction of the data: encoding a value out of range is our own
bug (`EncodeError`); a malformed varint read from a buffer raises `ValueError`,
which each reader relabels as the protocol error of its layer (the peer sent it).
"""

from __future__ import annotations

from kms.errors import EncodeError

MAX_VARINT_LEN = 10
_U64 = 1 << 64

# one-byte varints: nearly every field number and length written on the hot path
_SMALL = tuple(bytes((i,)) for i in range(0x80))


def encode_uvarint(value: int) -> bytes:
    """Unsigned varint of 0 <= value < 2**64 (EncodeError otherwise)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0 or value >= _U64:
        raise EncodeError(f"uvarint out of range: {value}")
    return _encode(value)


def encode_varint(value: int) -> bytes:
    """Protobuf int64 varint: a negative value is its 64-bit two's complement (10 bytes)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    if not -(_U64 >> 1) <= value < _U64:
        raise EncodeError(f"varint out of range: {value}")
    return _encode(value + _U64 if value < 0 else value)


def _encode(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`; ValueError if truncated or overlong."""
    value = 0
    for i in range(MAX_VARINT_LEN):
        if pos + i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if value >= _U64:
                raise ValueError("varint does not fit in 64 bits")
            return value, pos + i + 1
    raise ValueError("overlong varint")
