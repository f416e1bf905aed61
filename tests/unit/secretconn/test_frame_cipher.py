"""Frames and directional ciphers: layout, nonces, poisoning, limits."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

import kms.secretconn.cipher as cipher_module
from kms.errors import FrameError
from kms.secretconn.cipher import MAX_NONCE_COUNTER, RecvCipher, SendCipher, nonce_bytes
from kms.secretconn.frame import (
    FRAME_SIZE,
    SEALED_FRAME_SIZE,
    chunks,
    decode_frame,
    encode_frame,
)

KEY = bytes(range(32))


def _raw_seal(key: bytes, counter: int, plaintext: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(nonce_bytes(counter), plaintext, None)


def test_upstream_hello_and_world_frames(sc_vectors: dict[str, Any]) -> None:
    frames = sc_vectors["upstream_kdf_and_frames"]["frames"]
    sender = SendCipher(bytes.fromhex(frames[0]["sender_key"]))
    receiver = RecvCipher(bytes.fromhex(frames[0]["sender_key"]))
    for frame in frames:
        assert sender.counter == frame["nonce_counter"]
        assert nonce_bytes(frame["nonce_counter"]).hex() == frame["nonce_hex"]
        sealed = sender.seal_frame(frame["plaintext_payload_utf8"].encode())
        assert sealed.hex() == frame["sealed_frame_hex"]
        assert bytes(receiver.open_frame(sealed)) == frame["plaintext_payload_utf8"].encode()


def test_nonce_after_n_increments_matches_tendermint_rs(sc_vectors: dict[str, Any]) -> None:
    assert nonce_bytes(0) == bytes(12)
    for point in sc_vectors["nonce_increments"]["points"]:
        assert nonce_bytes(point["increments_applied"]).hex() == point["nonce_hex"]


def test_sender_increments_the_counter_once_per_frame() -> None:
    sender = SendCipher(KEY)
    for expected in range(5):
        assert sender.counter == expected
        sealed = sender.seal_frame(b"x")
        assert sealed == _raw_seal(KEY, expected, encode_frame(b"x"))
    assert sender.counter == 5


def test_frame_layout_is_le_length_payload_zero_padding() -> None:
    frame = encode_frame(b"abc")
    assert len(frame) == FRAME_SIZE
    assert frame[:4] == b"\x03\x00\x00\x00"
    assert frame[4:7] == b"abc"
    assert frame[7:] == bytes(1021)
    assert len(SendCipher(KEY).seal_frame(b"abc")) == SEALED_FRAME_SIZE == 1044


def test_never_builds_a_zero_length_or_oversized_frame() -> None:
    with pytest.raises(FrameError):
        encode_frame(b"")
    with pytest.raises(FrameError):
        encode_frame(bytes(1025))
    assert len(encode_frame(bytes(1024))) == FRAME_SIZE


def test_sender_refuses_an_empty_frame_and_is_poisoned() -> None:
    sender = SendCipher(KEY)
    with pytest.raises(FrameError):
        sender.seal_frame(b"")
    with pytest.raises(FrameError):
        sender.seal_frame(b"ok")


def test_receiver_ignores_padding_content() -> None:
    plaintext = struct.pack("<I", 5) + b"hello" + bytes(range(256)) * 3 + b"\xaa" * 251
    assert len(plaintext) == FRAME_SIZE
    receiver = RecvCipher(KEY)
    assert bytes(receiver.open_frame(_raw_seal(KEY, 0, plaintext))) == b"hello"


def test_receiver_accepts_a_zero_length_frame_as_no_data() -> None:
    receiver = RecvCipher(KEY)
    assert bytes(receiver.open_frame(_raw_seal(KEY, 0, bytes(FRAME_SIZE)))) == b""
    assert receiver.counter == 1


def test_receiver_rejects_length_above_1024_even_when_authentic() -> None:
    plaintext = struct.pack("<I", 1025) + bytes(1024)
    receiver = RecvCipher(KEY)
    with pytest.raises(FrameError, match="exceeds"):
        receiver.open_frame(_raw_seal(KEY, 0, plaintext))
    assert receiver.poisoned


def test_decode_frame_checks_size_and_length() -> None:
    with pytest.raises(FrameError):
        decode_frame(bytes(1027))
    assert bytes(decode_frame(struct.pack("<I", 1024) + b"z" * 1024)) == b"z" * 1024


def test_tampered_frame_fails_and_poisons_the_receiver() -> None:
    sealed = bytearray(SendCipher(KEY).seal_frame(b"payload"))
    good_next = SendCipher(KEY, counter=1).seal_frame(b"next")
    sealed[10] ^= 1
    receiver = RecvCipher(KEY)
    with pytest.raises(FrameError, match="authenticate"):
        receiver.open_frame(bytes(sealed))
    assert receiver.poisoned
    # Even a perfectly valid frame is refused afterwards.
    with pytest.raises(FrameError):
        receiver.open_frame(good_next)


def test_frame_with_wrong_nonce_is_rejected() -> None:
    receiver = RecvCipher(KEY)
    with pytest.raises(FrameError):
        receiver.open_frame(_raw_seal(KEY, 1, encode_frame(b"x")))


def test_receiver_rejects_wrong_sized_ciphertext() -> None:
    receiver = RecvCipher(KEY)
    with pytest.raises(FrameError):
        receiver.open_frame(bytes(1043))
    assert receiver.poisoned


def test_nonce_counter_refuses_to_wrap() -> None:
    sender = SendCipher(KEY, counter=MAX_NONCE_COUNTER)
    last = sender.seal_frame(b"last")
    assert last == _raw_seal(KEY, MAX_NONCE_COUNTER, encode_frame(b"last"))
    with pytest.raises(FrameError, match="exhausted"):
        sender.seal_frame(b"wrapped")
    assert sender.poisoned
    receiver = RecvCipher(KEY, counter=MAX_NONCE_COUNTER)
    assert bytes(receiver.open_frame(last)) == b"last"
    with pytest.raises(FrameError):
        receiver.open_frame(last)
    with pytest.raises(FrameError):
        nonce_bytes(MAX_NONCE_COUNTER + 1)


def test_one_aead_object_per_direction_not_per_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[bytes] = []

    def counting_aead(key: bytes) -> ChaCha20Poly1305:
        built.append(key)
        return ChaCha20Poly1305(key)

    monkeypatch.setattr(cipher_module, "ChaCha20Poly1305", counting_aead)
    sender, receiver = SendCipher(KEY), RecvCipher(KEY)
    for _ in range(20):
        receiver.open_frame(sender.seal_frame(b"m"))
    assert len(built) == 2


def test_cipher_repr_hides_the_key() -> None:
    assert KEY.hex() not in repr(SendCipher(KEY))
    assert "counter=0" in repr(RecvCipher(KEY))


def test_bad_key_length_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        SendCipher(bytes(31))


def test_chunks_cut_messages_at_1024_bytes() -> None:
    assert [len(c) for c in chunks(bytes(2500))] == [1024, 1024, 452]
    assert [len(c) for c in chunks(bytes(1024))] == [1024]
    assert list(chunks(b"")) == []
