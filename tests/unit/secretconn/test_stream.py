"""The sans-IO encrypted stream: message chunking, arbitrary receive chunking, poisoning."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from kms.errors import FrameError
from kms.secretconn.cipher import SendCipher, nonce_bytes
from kms.secretconn.frame import SEALED_FRAME_SIZE
from kms.secretconn.stream import SecretStream

K1 = bytes(range(32))
K2 = bytes(range(32, 64))


def pair() -> tuple[SecretStream, SecretStream]:
    return SecretStream(K1, K2), SecretStream(K2, K1)


def test_small_message_is_one_frame_and_round_trips() -> None:
    a, b = pair()
    wire = a.seal(b"ping")
    assert len(wire) == SEALED_FRAME_SIZE
    assert b.receive_data(wire) == b"ping"
    assert a.send_counter == b.recv_counter == 1


def test_empty_message_sends_nothing_and_uses_no_nonce() -> None:
    a, _ = pair()
    assert a.seal(b"") == b""
    assert a.send_counter == 0


@pytest.mark.parametrize(("size", "frames"), [(1024, 1), (1025, 2), (2048, 2), (10 * 1024, 10)])
def test_message_spans_ceil_size_over_1024_frames(size: int, frames: int) -> None:
    a, b = pair()
    message = bytes(i % 251 for i in range(size))
    wire = a.seal(message)
    assert len(wire) == frames * SEALED_FRAME_SIZE
    assert b.receive_data(wire) == message


def test_two_messages_never_share_a_frame() -> None:
    a, b = pair()
    wire = a.seal(b"x" * 1000) + a.seal(b"y" * 10)
    assert len(wire) == 2 * SEALED_FRAME_SIZE
    assert b.receive_data(wire[:SEALED_FRAME_SIZE]) == b"x" * 1000
    assert b.receive_data(wire[SEALED_FRAME_SIZE:]) == b"y" * 10


def test_receiving_byte_by_byte_yields_the_same_stream() -> None:
    a, b = pair()
    messages = [b"first", bytes(3000), b"third" * 300]
    wire = b"".join(a.seal(m) for m in messages)
    got = bytearray()
    for i in range(len(wire)):
        got += b.receive_data(wire[i : i + 1])
        assert b.buffered < SEALED_FRAME_SIZE
    assert bytes(got) == b"".join(messages)
    assert b.buffered == 0


def test_receiving_in_odd_chunks_yields_the_same_stream() -> None:
    a, b = pair()
    wire = b"".join(a.seal(bytes([n]) * (n * 97)) for n in range(1, 20))
    expected = b"".join(bytes([n]) * (n * 97) for n in range(1, 20))
    got = bytearray()
    pos = 0
    step = 1
    while pos < len(wire):
        got += b.receive_data(memoryview(wire)[pos : pos + step])
        pos += step
        step = step * 3 % 2087 + 1
    assert bytes(got) == expected


def test_frame_holding_end_of_one_message_and_start_of_next() -> None:
    # A peer that packs the stream differently from us (Go's reader copes; so must we).
    message_a = b"A" * 1500
    message_b = b"B" * 700
    stream = message_a + message_b
    sender = SendCipher(K1)
    wire = sender.seal_frame(stream[:1024]) + sender.seal_frame(stream[1024:2048])
    wire += sender.seal_frame(stream[2048:])
    _, b = pair()
    b = SecretStream(K2, K1)
    assert b.receive_data(wire) == stream


def test_padding_junk_from_a_reused_buffer_is_ignored() -> None:
    aead = ChaCha20Poly1305(K1)
    frame0 = struct.pack("<I", 3) + b"abc" + b"\x5a" * 1021
    frame1 = struct.pack("<I", 2) + b"de" + b"c" + b"\x5a" * 1021
    wire = aead.encrypt(nonce_bytes(0), frame0, None) + aead.encrypt(nonce_bytes(1), frame1, None)
    b = SecretStream(K2, K1)
    assert b.receive_data(wire) == b"abcde"


def test_bad_frame_poisons_both_directions() -> None:
    a, b = pair()
    wire = bytearray(a.seal(b"hello"))
    wire[-1] ^= 0x80
    with pytest.raises(FrameError):
        b.receive_data(bytes(wire))
    assert b.poisoned
    with pytest.raises(FrameError):
        b.receive_data(a.seal(b"valid"))
    with pytest.raises(FrameError):
        b.seal(b"reply")
    assert b.buffered == 0


def test_frames_before_a_bad_one_in_the_same_chunk_are_not_returned() -> None:
    # Fail closed: data of a chunk that contains a forged frame is never handed out.
    a, b = pair()
    good = a.seal(b"good")
    bad = bytearray(a.seal(b"evil"))
    bad[0] ^= 1
    with pytest.raises(FrameError):
        b.receive_data(good + bytes(bad))


def test_nonce_exhaustion_midway_sends_no_partial_message() -> None:
    a = SecretStream(K1, K2, send_counter=(1 << 64) - 1)
    with pytest.raises(FrameError):
        a.seal(bytes(2048))
    assert a.poisoned
    with pytest.raises(FrameError):
        a.seal(b"x")


def test_replayed_frame_is_rejected() -> None:
    a, b = pair()
    wire = a.seal(b"once")
    assert b.receive_data(wire) == b"once"
    with pytest.raises(FrameError):
        b.receive_data(wire)


def test_reflected_frame_is_rejected() -> None:
    a, _ = pair()
    with pytest.raises(FrameError):
        a.receive_data(a.seal(b"echo"))
