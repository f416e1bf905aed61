"""Ed25519 for the simulated device: seed keys via `cryptography`, expanded keys in pure Python.

Owns: the device's internal Ed25519 representation (the 96-byte "expanded"
form used in legacy wrap blobs: clamped scalar big-endian || prefix || public
key, YUBIHSM.md §4.13), conversion seed -> expanded, and signing from either
form. A key imported from a legacy wrap blob has no seed, so it is signed here
with RFC 8032 arithmetic (slow, about a millisecond, and not constant-time:
this is a simulator, never a production signer). Never touches I/O.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)


def _recover_x(y: int, sign: int) -> int:
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        raise ValueError("not a point")
    if x & 1 != sign:
        x = _P - x
    return x


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
_G: Point = (_GX, _GY, 1, _GX * _GY % _P)
_IDENTITY: Point = (0, 1, 1, 0)


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: Point) -> Point:
    q = _IDENTITY
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _encode(p: Point) -> bytes:
    zinv = pow(p[2], _P - 2, _P)
    x, y = p[0] * zinv % _P, p[1] * zinv % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _sha512_int(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def public_from_seed(seed: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def expand_seed(seed: bytes) -> bytes:
    """96 bytes: clamped scalar (big-endian) || prefix || public key."""
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(reversed(h[:32])) + bytes(h[32:]) + public_from_seed(seed)


def expanded_is_consistent(expanded: bytes) -> bool:
    """True when the public key in an expanded key matches its scalar."""
    if len(expanded) != 96:
        return False
    a = int.from_bytes(expanded[:32], "big")
    return _encode(_mul(a, _G)) == expanded[64:]


def sign_expanded(expanded: bytes, message: bytes) -> bytes:
    """RFC 8032 Ed25519 signature from the 96-byte expanded key."""
    a = int.from_bytes(expanded[:32], "big")
    prefix, public = expanded[32:64], expanded[64:96]
    r = _sha512_int(prefix, message) % _L
    big_r = _encode(_mul(r, _G))
    k = _sha512_int(big_r, public, message) % _L
    s = (r + k * a) % _L
    return big_r + s.to_bytes(32, "little")


def sign_seed(seed: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)
