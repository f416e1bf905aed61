"""State file format 2: two checksummed slots, written alternately in place (DESIGN.md §5).

Owns: the byte layout of a format-2 state file and the choice of which slot is
current. Pure functions over bytes: never opens a file (that is
`kms.state.store`), never decides anything about signing.

Layout: the file is exactly two 4 KiB slots (one disk block each, so one slot
is written by one block write). A slot is::

    magic "KMSSTATE" (8) | version u16 = 2 | reserved u16 = 0 | sequence u64 |
    payload length u32 | payload | SHA-256 of everything before it (32) | zeros

all integers big-endian. The payload is the format-1 JSON document of the state
(`kms.state.format1`), so both formats share one strict decoder.

Rules:
- A save writes the slot NOT holding the current state, with sequence + 1. A
  torn or lost write therefore leaves the other slot, the previous state, which
  is safe: no reply was sent for a write that did not complete.
- The current slot is the valid slot with the highest sequence. A slot is valid
  when its magic, version, length and checksum all hold; an all-zero slot is
  "empty" (a fresh file has one).
- Fail closed: neither slot valid, both valid with one sequence, a slot whose
  checksum holds but whose version is unknown (written by a newer kms) or whose
  payload does not decode: the whole file is refused, never half-trusted.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from kms.errors import BadState
from kms.state.format1 import decode_foreign_state, decode_state, encode_state
from kms.state.machine import SignState

MAGIC = b"KMSSTATE"
VERSION = 2
SLOT_SIZE = 4096
FILE_SIZE = 2 * SLOT_SIZE
_HEADER = struct.Struct(">8sHHQI")
_DIGEST_SIZE = 32
MAX_PAYLOAD = SLOT_SIZE - _HEADER.size - _DIGEST_SIZE
_EMPTY_SLOT = bytes(SLOT_SIZE)


@dataclass(frozen=True, slots=True)
class Current:
    """The state a format-2 file holds and where it sits."""

    state: SignState
    sequence: int
    slot: int  # 0 or 1

    @property
    def next_slot(self) -> int:
        return 1 - self.slot


def is_format2(data: bytes) -> bool:
    """Whether `data` (the start of a state file) is format 2 rather than format-1 JSON."""
    return data[: len(MAGIC)] == MAGIC or data[SLOT_SIZE : SLOT_SIZE + len(MAGIC)] == MAGIC


def encode_slot(state: SignState, sequence: int) -> bytes:
    """One slot holding `state` at `sequence`; BadState if the state does not fit."""
    payload = encode_state(state, compact=True)
    if len(payload) > MAX_PAYLOAD:
        raise BadState(f"state is {len(payload)} bytes, more than a slot holds ({MAX_PAYLOAD})")
    head = _HEADER.pack(MAGIC, VERSION, 0, sequence, len(payload)) + payload
    body = head + hashlib.sha256(head).digest()
    return body + bytes(SLOT_SIZE - len(body))


def new_file(state: SignState) -> bytes:
    """A whole fresh file: `state` in slot 0 at sequence 1, slot 1 empty."""
    return encode_slot(state, 1) + _EMPTY_SLOT


def slot_offset(slot: int) -> int:
    return slot * SLOT_SIZE


def _read_slot(raw: bytes, index: int) -> tuple[int, SignState] | None:
    """(sequence, state) for a valid slot, None for an empty or torn one; BadState if corrupt."""
    if raw == _EMPTY_SLOT:
        return None
    magic, version, _reserved, sequence, length = _HEADER.unpack_from(raw)
    if magic != MAGIC or length > MAX_PAYLOAD:
        return None  # torn (or never written)
    end = _HEADER.size + length
    if hashlib.sha256(raw[:end]).digest() != raw[end : end + _DIGEST_SIZE]:
        return None  # torn
    if version != VERSION:
        raise BadState(f"slot {index} is format version {version}, this kms reads {VERSION}")
    try:
        return sequence, decode_state(raw[_HEADER.size : end])
    except BadState as e:
        raise BadState(f"slot {index} has a valid checksum but {e}") from None


def decode_file(data: bytes) -> Current:
    """The current state of a format-2 file; BadState (fail closed) if it cannot be trusted."""
    if len(data) != FILE_SIZE:
        raise BadState(f"is {len(data)} bytes, a format-2 state file is {FILE_SIZE} (truncated?)")
    slots = [_read_slot(data[slot_offset(i) : slot_offset(i + 1)], i) for i in (0, 1)]
    valid = [(seq, i, state) for i, s in enumerate(slots) if s is not None for seq, state in [s]]
    if not valid:
        raise BadState("has no valid slot (both torn, empty or corrupt)")
    if len(valid) == 2 and valid[0][0] == valid[1][0]:
        raise BadState(f"has two slots with the same sequence {valid[0][0]} (corrupt)")
    sequence, slot, state = max(valid)
    return Current(state, sequence, slot)


def decode_importable(data: bytes) -> tuple[SignState, str]:
    """Any state file `kms state import` takes: ours (format 2 or 1), tmkms's or CometBFT's.

    Returns the state and the name of the format detected; BadState if unusable.
    """
    if is_format2(data):
        return decode_file(data).state, "kms format 2"
    return decode_foreign_state(data)
