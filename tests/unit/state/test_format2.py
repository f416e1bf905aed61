"""State file format 2: a torn or corrupt slot falls back to the previous state or refuses.

Never a newer state than was durable, never a reset (DESIGN.md §5).
"""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from kms.errors import BadState
from kms.state import format2
from kms.state.machine import SignCandidate, SignState, advance
from tests.unit.state.helpers import CHAIN, PRECOMMIT, SEED, block, vote

NOW = datetime(2026, 12, 2, 3, 4, 5, tzinfo=UTC)


def state_at(height: int) -> SignState:
    cand = SignCandidate.for_vote(CHAIN, vote(PRECOMMIT, height, 0, block(height % 250 + 1)))
    return advance(cand, SigningKey(SEED).sign(cand.sign_bytes).signature, NOW)


def two_slot_file(older: int, newer: int) -> bytes:
    """Sequence 2 (height `newer`) in slot 0, sequence 1 (height `older`) in slot 1."""
    return format2.encode_slot(state_at(newer), 2) + format2.encode_slot(state_at(older), 1)


def test_round_trip_and_the_newest_sequence_wins() -> None:
    data = two_slot_file(7, 8)
    assert len(data) == format2.FILE_SIZE
    cur = format2.decode_file(data)
    assert (cur.state, cur.sequence, cur.slot, cur.next_slot) == (state_at(8), 2, 0, 1)
    fresh = format2.decode_file(format2.new_file(state_at(3)))
    assert (fresh.state, fresh.sequence, fresh.slot) == (state_at(3), 1, 0)


def _write_torn(data: bytes, slot: int, new_slot: bytes, cut: int, garbage: bytes) -> bytes:
    """The slot being written holds the new bytes up to `cut`, then `garbage` or the old bytes."""
    off = format2.slot_offset(slot)
    old = data[off : off + format2.SLOT_SIZE]
    tail = garbage[: format2.SLOT_SIZE - cut] if garbage else old[cut:]
    torn = new_slot[:cut] + tail
    return data[:off] + torn + data[off + format2.SLOT_SIZE :]


@pytest.mark.parametrize("garbage", [False, True], ids=["old-bytes-after-cut", "garbage"])
def test_a_write_torn_at_any_offset_loads_the_previous_state_or_the_complete_new_one(
    garbage: bool,
) -> None:
    data = two_slot_file(7, 8)  # current: height 8, sequence 2, slot 0
    new = format2.encode_slot(state_at(9), 3)  # the save in flight goes to slot 1
    rng = random.Random(1)
    junk = bytes(rng.randrange(256) for _ in range(format2.SLOT_SIZE)) if garbage else b""
    (length,) = struct.unpack_from(">I", new, 20)
    checked_end = 24 + length + 32  # header, payload, checksum; zero padding after it
    for cut in range(format2.SLOT_SIZE + 1):
        loaded = format2.decode_file(_write_torn(data, 1, new, cut, junk)).state
        if cut >= checked_end:  # every checked byte of the new slot reached the disk
            assert loaded == state_at(9), f"cut at {cut}"
        else:
            assert loaded == state_at(8), f"cut at {cut}"


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 1),
    st.integers(0, format2.SLOT_SIZE - 1),
    st.binary(min_size=1, max_size=64),
)
def test_corruption_of_one_slot_never_yields_a_state_it_did_not_hold(
    slot: int, offset: int, noise: bytes
) -> None:
    data = bytearray(two_slot_file(7, 8))
    start = format2.slot_offset(slot) + offset
    end = min(start + len(noise), format2.slot_offset(slot + 1))
    before = bytes(data[start:end])
    data[start:end] = noise[: end - start]
    if bytes(data[start:end]) == before:
        return
    try:
        loaded = format2.decode_file(bytes(data)).state
    except BadState:
        return  # refusing is always allowed
    # slot 0 (newer) damaged: fall back to slot 1; slot 1 damaged: slot 0 still newest
    assert loaded == state_at(7 if slot == 0 else 8) or loaded == state_at(8)


def test_neither_slot_valid_is_refused_never_reset() -> None:
    with pytest.raises(BadState, match="no valid slot"):
        format2.decode_file(bytes(format2.FILE_SIZE))
    data = bytearray(two_slot_file(7, 8))
    data[100] ^= 1
    data[format2.SLOT_SIZE + 100] ^= 1
    with pytest.raises(BadState, match="no valid slot"):
        format2.decode_file(bytes(data))


def test_two_slots_with_one_sequence_are_refused() -> None:
    data = format2.encode_slot(state_at(8), 5) + format2.encode_slot(state_at(7), 5)
    with pytest.raises(BadState, match="same sequence"):
        format2.decode_file(data)


def test_a_slot_from_a_newer_format_version_is_refused_not_skipped() -> None:
    import hashlib

    slot = bytearray(format2.encode_slot(state_at(9), 3))
    struct.pack_into(">H", slot, 8, 3)  # version 3, checksum made valid again
    (length,) = struct.unpack_from(">I", slot, 20)
    end = 24 + length
    slot[end : end + 32] = hashlib.sha256(bytes(slot[:end])).digest()
    data = two_slot_file(7, 8)
    with pytest.raises(BadState, match="format version 3"):
        format2.decode_file(data[: format2.SLOT_SIZE] + bytes(slot))


@pytest.mark.parametrize("size", [0, 1, format2.SLOT_SIZE, format2.FILE_SIZE - 1])
def test_a_truncated_file_is_refused(size: int) -> None:
    with pytest.raises(BadState, match="truncated"):
        format2.decode_file(two_slot_file(7, 8)[:size])


def test_a_state_too_large_for_a_slot_is_refused_when_saving() -> None:
    big = SignState(1, 0, 1, sign_bytes=b"\x00" * 3000, signature=b"\x01" * 64)
    with pytest.raises(BadState, match="more than a slot holds"):
        format2.encode_slot(big, 1)
