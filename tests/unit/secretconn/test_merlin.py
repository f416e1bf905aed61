"""Merlin transcript and its Keccak/STROBE core reproduce the published vectors."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from kms.secretconn.merlin import Strobe128, Transcript, keccak_f1600


def test_keccak_permutation_matches_sha3_256_of_empty_string() -> None:
    # SHA3-256(""): rate 136, domain padding 0x06 .. 0x80, one permutation.
    state = bytearray(200)
    state[0] ^= 0x06
    state[135] ^= 0x80
    keccak_f1600(state)
    assert bytes(state[:32]) == hashlib.sha3_256(b"").digest()


def test_keccak_permutation_matches_shake128_squeeze_over_several_blocks() -> None:
    message = bytes(range(100))
    state = bytearray(200)
    state[: len(message)] = message
    state[len(message)] ^= 0x1F
    state[167] ^= 0x80
    keccak_f1600(state)
    out = bytes(state[:168])
    keccak_f1600(state)
    out += bytes(state[:168])
    assert out == hashlib.shake_128(message).digest(336)


def test_keccak_rejects_wrong_state_size() -> None:
    with pytest.raises(ValueError):
        keccak_f1600(bytearray(199))


def test_merlin_simple_vector(merlin_vectors: dict[str, Any]) -> None:
    vector = next(v for v in merlin_vectors["vectors"] if v["id"] == "merlin-simple")
    transcript = Transcript(vector["transcript_label"].encode())
    for op in vector["ops"]:
        if op["op"] == "append_message":
            transcript.append_message(op["label"].encode(), op["message_utf8"].encode())
        else:
            challenge = transcript.challenge_bytes(op["label"].encode(), op["length"])
    assert challenge.hex() == vector["expected_challenge_hex"]


def test_merlin_complex_vector(merlin_vectors: dict[str, Any]) -> None:
    vector = next(v for v in merlin_vectors["vectors"] if v["id"] == "merlin-complex")
    transcript = Transcript(vector["transcript_label"].encode())
    transcript.append_message(b"step1", b"some data")
    data = b"c" * 1024
    challenge = b""
    for _ in range(32):
        challenge = transcript.challenge_bytes(b"challenge", 32)
        transcript.append_message(b"bigdata", data)
        transcript.append_message(b"challengedata", challenge)
    assert challenge.hex() == vector["expected_challenge_hex"]


def test_transcript_challenge_depends_on_every_appended_byte() -> None:
    def challenge(message: bytes) -> bytes:
        t = Transcript(b"test protocol")
        t.append_message(b"some label", message)
        return t.challenge_bytes(b"challenge", 32)

    assert challenge(b"some data") != challenge(b"some datb")
    assert challenge(b"some data") != challenge(b"some data\x00")


def test_strobe_refuses_to_continue_an_operation_of_another_kind() -> None:
    strobe = Strobe128(b"proto")
    strobe.meta_ad(b"x", more=False)
    with pytest.raises(ValueError):
        strobe.ad(b"y", more=True)


def test_cloned_transcript_continues_independently_and_identically() -> None:
    base = Transcript(b"test protocol")
    twin = base.clone()
    diverging = base.clone()
    for t in (base, twin, diverging):
        t.append_message(b"some label", b"some data")
    diverging.append_message(b"extra", b"")
    expected = "d5a21972d0d5fe320c0d263fac7fffb8145aa640af6e9bca177c03c7efcf0615"  # merlin-simple
    assert twin.challenge_bytes(b"challenge", 32).hex() == expected
    assert base.challenge_bytes(b"challenge", 32).hex() == expected
    assert diverging.challenge_bytes(b"challenge", 32).hex() != expected
