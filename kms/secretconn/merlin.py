"""Merlin transcripts (v1.0) over a minimal STROBE-128 / Keccak-f[1600], pure Python.

Owns: the Keccak-f[1600] permutation, the subset of STROBE-128 that Merlin uses
(meta-AD, AD, PRF, with the "more" continuation flag) and the Merlin
`Transcript` (`append_message`, `challenge_bytes`).

Rules:
- Byte-exact with Merlin v1.0 (gtank/merlin, curve25519-voi, dalek merlin); pinned by
  the upstream `simple` and `complex` vectors in merlin_vectors.json.
- Only what SecretConnection needs: no KEY/CLR/ENC/MAC operations, no RNG.
- A transcript is single-use state: after `challenge_bytes` it keeps evolving, exactly
  like Merlin (later operations depend on everything before).

Never touches: sockets, keys, the SecretConnection state machine, I/O of any kind.
"""

from __future__ import annotations

import struct

__all__ = ["Strobe128", "Transcript", "keccak_f1600"]

_MASK64 = (1 << 64) - 1

_ROUND_CONSTANTS: tuple[int, ...] = (
    0x0000000000000001,
    0x0000000000008082,
    0x800000000000808A,
    0x8000000080008000,
    0x000000000000808B,
    0x0000000080000001,
    0x8000000080008081,
    0x8000000000008009,
    0x000000000000008A,
    0x0000000000000088,
    0x0000000080008009,
    0x000000008000000A,
    0x000000008000808B,
    0x800000000000008B,
    0x8000000000008089,
    0x8000000000008003,
    0x8000000000008002,
    0x8000000000000080,
    0x000000000000800A,
    0x800000008000000A,
    0x8000000080008081,
    0x8000000000008080,
    0x0000000080000001,
    0x8000000080008008,
)

# Rotation offset of lane (x, y), indexed by x + 5 * y.
_ROTATIONS: tuple[int, ...] = (
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
)  # fmt: skip

# rho+pi as a table: (source lane, rotation, destination lane). B[y, 2x+3y] = rot(A[x, y]).
_RHO_PI: tuple[tuple[int, int, int], ...] = tuple(
    (x + 5 * y, _ROTATIONS[x + 5 * y], y + 5 * ((2 * x + 3 * y) % 5))
    for y in range(5)
    for x in range(5)
)

_LANES = struct.Struct("<25Q")


def _permute_lanes(a: list[int]) -> None:
    """Keccak-f[1600] on 25 little-endian 64-bit lanes, in place."""
    b = [0] * 25
    mask = _MASK64
    rho_pi = _RHO_PI
    for rc in _ROUND_CONSTANTS:
        # theta
        c0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20]
        c1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21]
        c2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22]
        c3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23]
        c4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24]
        d0 = c4 ^ (((c1 << 1) | (c1 >> 63)) & mask)
        d1 = c0 ^ (((c2 << 1) | (c2 >> 63)) & mask)
        d2 = c1 ^ (((c3 << 1) | (c3 >> 63)) & mask)
        d3 = c2 ^ (((c4 << 1) | (c4 >> 63)) & mask)
        d4 = c3 ^ (((c0 << 1) | (c0 >> 63)) & mask)
        for i in (0, 5, 10, 15, 20):
            a[i] ^= d0
            a[i + 1] ^= d1
            a[i + 2] ^= d2
            a[i + 3] ^= d3
            a[i + 4] ^= d4
        # rho and pi
        for src, rot, dst in rho_pi:
            v = a[src]
            b[dst] = ((v << rot) | (v >> (64 - rot))) & mask if rot else v
        # chi
        for i in (0, 5, 10, 15, 20):
            b0, b1, b2, b3, b4 = b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4]
            a[i] = b0 ^ (~b1 & b2)
            a[i + 1] = b1 ^ (~b2 & b3)
            a[i + 2] = b2 ^ (~b3 & b4)
            a[i + 3] = b3 ^ (~b4 & b0)
            a[i + 4] = b4 ^ (~b0 & b1)
        # iota
        a[0] ^= rc


def keccak_f1600(state: bytearray) -> None:
    """Apply Keccak-f[1600] to a 200-byte state in place."""
    if len(state) != 200:
        raise ValueError("Keccak-f[1600] state must be 200 bytes")
    lanes = list(_LANES.unpack(state))
    _permute_lanes(lanes)
    _LANES.pack_into(state, 0, *lanes)


# STROBE-128 parameters and operation flags (STROBE v1.0.2 as used by Merlin).
_STROBE_R = 166  # rate in bytes: 200 - 2 * (128 / 8) - 2
_FLAG_I = 1 << 0
_FLAG_A = 1 << 1
_FLAG_C = 1 << 2
_FLAG_T = 1 << 3
_FLAG_M = 1 << 4
_FLAG_K = 1 << 5


class Strobe128:
    """The part of STROBE-128 that Merlin needs: meta-AD, AD and PRF."""

    __slots__ = ("_cur_flags", "_pos", "_pos_begin", "_state")

    def __init__(self, protocol_label: bytes) -> None:
        state = bytearray(200)
        state[0:6] = bytes((1, _STROBE_R + 2, 1, 0, 1, 96))
        state[6:18] = b"STROBEv1.0.2"
        keccak_f1600(state)
        self._state = state
        self._pos = 0
        self._pos_begin = 0
        self._cur_flags = 0
        self.meta_ad(protocol_label, more=False)

    def clone(self) -> Strobe128:
        """An independent copy of this state (to reuse a common prefix)."""
        twin = Strobe128.__new__(Strobe128)
        twin._state = bytearray(self._state)
        twin._pos = self._pos
        twin._pos_begin = self._pos_begin
        twin._cur_flags = self._cur_flags
        return twin

    def meta_ad(self, data: bytes, *, more: bool) -> None:
        self._begin_op(_FLAG_M | _FLAG_A, more)
        self._absorb(data)

    def ad(self, data: bytes, *, more: bool) -> None:
        self._begin_op(_FLAG_A, more)
        self._absorb(data)

    def prf(self, length: int, *, more: bool) -> bytes:
        self._begin_op(_FLAG_I | _FLAG_A | _FLAG_C, more)
        return self._squeeze(length)

    def _run_f(self) -> None:
        state = self._state
        state[self._pos] ^= self._pos_begin
        state[self._pos + 1] ^= 0x04
        state[_STROBE_R + 1] ^= 0x80
        keccak_f1600(state)
        self._pos = 0
        self._pos_begin = 0

    def _absorb(self, data: bytes) -> None:
        state = self._state
        for byte in data:
            state[self._pos] ^= byte
            self._pos += 1
            if self._pos == _STROBE_R:
                self._run_f()

    def _squeeze(self, length: int) -> bytes:
        out = bytearray(length)
        state = self._state
        for i in range(length):
            out[i] = state[self._pos]
            state[self._pos] = 0
            self._pos += 1
            if self._pos == _STROBE_R:
                self._run_f()
        return bytes(out)

    def _begin_op(self, flags: int, more: bool) -> None:
        if more:
            if self._cur_flags != flags:
                raise ValueError("STROBE: continued operation with different flags")
            return
        if flags & _FLAG_T:
            raise ValueError("STROBE: transport operations are not supported")
        old_begin = self._pos_begin
        self._pos_begin = self._pos + 1
        self._cur_flags = flags
        self._absorb(bytes((old_begin, flags)))
        if flags & (_FLAG_C | _FLAG_K) and self._pos != 0:
            self._run_f()


class Transcript:
    """A Merlin v1.0 transcript: `append_message` and `challenge_bytes`."""

    __slots__ = ("_strobe",)

    def __init__(self, label: bytes) -> None:
        self._strobe = Strobe128(b"Merlin v1.0")
        self.append_message(b"dom-sep", label)

    def clone(self) -> Transcript:
        """An independent copy: both continue from the same transcript state."""
        twin = Transcript.__new__(Transcript)
        twin._strobe = self._strobe.clone()
        return twin

    def append_message(self, label: bytes, message: bytes) -> None:
        self._strobe.meta_ad(label, more=False)
        self._strobe.meta_ad(_le32(len(message)), more=True)
        self._strobe.ad(message, more=False)

    def challenge_bytes(self, label: bytes, length: int) -> bytes:
        self._strobe.meta_ad(label, more=False)
        self._strobe.meta_ad(_le32(length), more=True)
        return self._strobe.prf(length, more=False)


def _le32(n: int) -> bytes:
    if not 0 <= n <= 0xFFFFFFFF:
        raise ValueError("Merlin lengths must fit in 32 bits")
    return n.to_bytes(4, "little")
