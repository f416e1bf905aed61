"""Property tests: hostile bytes at the Noise handshake (both roles) and the frame reader.

Whatever arrives, only HandshakeError/FrameError come out, nothing completes that should
not, every call returns, and what is buffered stays bounded by one frame.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms.errors import FrameError, HandshakeError
from kms.noise.handshake import MAX_HANDSHAKE_MESSAGE, NoiseHandshake
from kms.noise.state import CipherState
from kms.noise.stream import MAX_FRAME, NoiseStream, frame_bytes

NODE_SEED = b"\x01" * 32
KMS_SEED = b"\x02" * 32
FUZZ = settings(
    max_examples=150, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow]
)
chunkings = st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=20)


def _chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(data):
        out.append(data[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    return out


def _genuine_message_2() -> bytes:
    kms = NoiseHandshake(KMS_SEED, initiator=True)
    node = NoiseHandshake(NODE_SEED, initiator=False)
    node.receive_data(kms.data_to_send())
    return node.data_to_send()


@FUZZ
@given(data=st.binary(max_size=6000), sizes=chunkings)
def test_initiator_survives_random_bytes(data: bytes, sizes: list[int]) -> None:
    hs = NoiseHandshake(KMS_SEED, initiator=True)
    hs.data_to_send()
    try:
        for c in _chunks(data, sizes):
            hs.receive_data(c)
            assert hs.buffered <= 2 + MAX_HANDSHAKE_MESSAGE
    except (HandshakeError, FrameError):
        assert hs.data_to_send() == b""  # a failed handshake sends nothing more
        return
    assert not hs.done


@FUZZ
@given(data=st.binary(max_size=6000), sizes=chunkings)
def test_responder_survives_random_bytes(data: bytes, sizes: list[int]) -> None:
    hs = NoiseHandshake(NODE_SEED, initiator=False)
    try:
        for c in _chunks(data, sizes):
            hs.receive_data(c)
            assert hs.buffered <= 2 + MAX_HANDSHAKE_MESSAGE
    except (HandshakeError, FrameError):
        return
    assert not hs.done


@FUZZ
@given(
    pos=st.integers(min_value=0, max_value=203),
    flip=st.integers(min_value=1, max_value=255),
    sizes=chunkings,
)
def test_any_single_byte_change_in_message_2_is_refused(
    pos: int, flip: int, sizes: list[int]
) -> None:
    m2 = bytearray(_genuine_message_2())
    m2[pos] ^= flip
    hs = NoiseHandshake(KMS_SEED, initiator=True)
    hs.data_to_send()
    try:
        for c in _chunks(bytes(m2), sizes):
            hs.receive_data(c)
    except (HandshakeError, FrameError):
        assert not hs.done and hs.data_to_send() == b""
        return
    # only a longer length header survives: then we just wait for more bytes
    assert not hs.done and pos < 2


@FUZZ
@given(cut=st.integers(min_value=0, max_value=203))
def test_truncated_message_2_never_completes(cut: int) -> None:
    hs = NoiseHandshake(KMS_SEED, initiator=True)
    hs.data_to_send()
    hs.receive_data(_genuine_message_2()[:cut])
    assert not hs.done and hs.data_to_send() == b""


@FUZZ
@given(data=st.binary(max_size=200_000), sizes=st.lists(st.integers(1, 70_000), min_size=1))
def test_random_transport_bytes_never_yield_plaintext(data: bytes, sizes: list[int]) -> None:
    s = NoiseStream(CipherState(b"\x05" * 32), CipherState(b"\x06" * 32))
    try:
        for c in _chunks(data, sizes):
            assert s.receive_data(c) == b""
            assert s.buffered <= 2 + MAX_FRAME
    except FrameError:
        assert s.poisoned


@FUZZ
@given(
    msgs=st.lists(st.binary(min_size=1, max_size=70_000), min_size=1, max_size=4),
    sizes=st.lists(st.integers(1, 80_000), min_size=1),
    cut=st.integers(min_value=1, max_value=17),
)
def test_genuine_frames_in_any_chunking_and_a_truncated_tail(
    msgs: list[bytes], sizes: list[int], cut: int
) -> None:
    tx = NoiseStream(CipherState(b"\x05" * 32), CipherState(b"\x06" * 32))
    rx = NoiseStream(CipherState(b"\x06" * 32), CipherState(b"\x05" * 32))
    wire = b"".join(tx.seal(m) for m in msgs)
    out = bytearray()
    for c in _chunks(wire[:-cut], sizes):
        out += rx.receive_data(c)
        assert rx.buffered <= 2 + MAX_FRAME
    joined = b"".join(msgs)
    assert joined.startswith(bytes(out)) and len(out) < len(joined)
    assert rx.receive_data(wire[-cut:]) == joined[len(out) :]


def test_a_max_length_header_holds_one_frame_then_fails_cleanly() -> None:
    s = NoiseStream(CipherState(b"\x05" * 32), CipherState(b"\x06" * 32))
    assert s.receive_data(b"\xff\xff" + bytes(65_000)) == b""
    assert s.buffered == 65_002
    with pytest.raises(FrameError, match="authenticate"):
        s.receive_data(bytes(10_000))  # completes the 65535-byte frame: garbage
    assert s.poisoned and s.buffered == 0
    assert frame_bytes(b"") == b"\x00\x00"
