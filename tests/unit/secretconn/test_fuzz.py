"""Property tests: hostile bytes at the frame reader and the handshake.

Whatever arrives, only FrameError/HandshakeError come out, nothing completes that should
not, every call returns (no hang), and buffered state stays bounded.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms.errors import FrameError, HandshakeError
from kms.secretconn.cipher import nonce_bytes
from kms.secretconn.frame import FRAME_SIZE, SEALED_FRAME_SIZE
from kms.secretconn.handshake import Handshake, HandshakeState, encode_ephemeral_message
from kms.secretconn.stream import SecretStream
from tests.unit.secretconn._peer import RawPeer

K1 = bytes(range(32))
K2 = bytes(range(32, 64))
FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)
# Upper bound on what a handshake may hold between calls: a partial ephemeral message,
# a partial sealed frame, and an AuthSig body up to the parser's cap plus one frame.
HANDSHAKE_BUFFER_BOUND = 35 + SEALED_FRAME_SIZE + 8192 + 1024 + 10

T = TypeVar("T")

chunkings = st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=20)


def _feed_in_chunks(feed: Callable[[bytes], T], data: bytes, sizes: list[int]) -> list[T]:
    out = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.append(feed(data[pos : pos + size]))
        pos += size
        i += 1
    return out


@FUZZ
@given(data=st.binary(max_size=5000), sizes=chunkings)
def test_random_ciphertext_never_yields_data_and_only_raises_frame_error(
    data: bytes, sizes: list[int]
) -> None:
    stream = SecretStream(K1, K2)
    try:
        outputs = _feed_in_chunks(stream.receive_data, data, sizes)
    except FrameError:
        assert stream.poisoned
        assert len(data) >= SEALED_FRAME_SIZE
        return
    assert all(out == b"" for out in outputs)
    assert len(data) < SEALED_FRAME_SIZE
    assert stream.buffered == len(data)


@FUZZ
@given(plaintexts=st.lists(st.binary(min_size=FRAME_SIZE, max_size=FRAME_SIZE), max_size=6))
def test_authentic_frames_with_arbitrary_plaintext_obey_the_length_rule(
    plaintexts: list[bytes],
) -> None:
    aead = ChaCha20Poly1305(K2)
    wire = b"".join(aead.encrypt(nonce_bytes(i), p, None) for i, p in enumerate(plaintexts))
    expected = bytearray()
    valid = True
    for p in plaintexts:
        (n,) = struct.unpack_from("<I", p)
        if n > 1024:
            valid = False
            break
        expected += p[4 : 4 + n]
    stream = SecretStream(K1, K2)
    try:
        got = stream.receive_data(wire)
    except FrameError:
        assert not valid
        return
    assert valid
    assert got == bytes(expected)


@FUZZ
@given(messages=st.lists(st.binary(max_size=4000), max_size=5), sizes=chunkings)
def test_round_trip_is_identity_for_any_messages_and_chunking(
    messages: list[bytes], sizes: list[int]
) -> None:
    a, b = SecretStream(K1, K2), SecretStream(K2, K1)
    wire = b"".join(a.seal(m) for m in messages)
    got = b"".join(_feed_in_chunks(b.receive_data, wire, sizes))
    assert got == b"".join(messages)
    assert b.buffered == 0


@FUZZ
@given(data=st.binary(max_size=3000), sizes=chunkings)
def test_random_bytes_at_a_fresh_handshake(data: bytes, sizes: list[int]) -> None:
    hs = Handshake(bytes(32), ephemeral_secret=bytes([9]) * 32)
    try:
        _feed_in_chunks(hs.receive_data, data, sizes)
    except (HandshakeError, FrameError):
        assert hs.state is HandshakeState.FAILED
        return
    assert not hs.done
    assert hs.buffered <= HANDSHAKE_BUFFER_BOUND


@FUZZ
@given(remote=st.binary(min_size=32, max_size=32), tail=st.binary(max_size=3000), sizes=chunkings)
def test_random_ephemeral_key_then_random_bytes(
    remote: bytes, tail: bytes, sizes: list[int]
) -> None:
    hs = Handshake(bytes(32), ephemeral_secret=bytes([9]) * 32)
    try:
        _feed_in_chunks(hs.receive_data, encode_ephemeral_message(remote) + tail, sizes)
    except (HandshakeError, FrameError):
        assert hs.state is HandshakeState.FAILED
        return
    assert not hs.done
    assert hs.buffered <= HANDSHAKE_BUFFER_BOUND


@FUZZ
@given(payload=st.binary(max_size=12000), sizes=chunkings)
def test_authentic_frames_with_arbitrary_auth_sig_payload(payload: bytes, sizes: list[int]) -> None:
    hs, peer = Handshake(os.urandom(32)), RawPeer()
    peer.on_first_message(hs.data_to_send())
    hs.receive_data(peer.first_message())
    try:
        _feed_in_chunks(hs.receive_data, peer.seal(payload), sizes)
    except HandshakeError:
        assert hs.state is HandshakeState.FAILED
        return
    assert not hs.done  # random bytes never carry a valid signature over the challenge
    assert hs.buffered <= HANDSHAKE_BUFFER_BOUND


@FUZZ
@given(
    position=st.integers(min_value=0, max_value=102), flip=st.integers(min_value=1, max_value=255)
)
def test_any_single_byte_change_to_a_valid_auth_sig_is_never_accepted(
    position: int, flip: int
) -> None:
    hs, peer = Handshake(os.urandom(32)), RawPeer()
    peer.on_first_message(hs.data_to_send())
    hs.receive_data(peer.first_message())
    auth = bytearray(peer.honest_auth_sig())
    auth[position] ^= flip
    try:
        hs.receive_data(peer.seal(bytes(auth)))
    except HandshakeError:
        return
    assert not hs.done  # e.g. a longer length prefix: still waiting, never authenticated
