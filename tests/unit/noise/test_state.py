"""Noise XX core against the published cacophony vector and the spec's rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kms.errors import FrameError, HandshakeError
from kms.noise.state import PROTOCOL_NAME, CipherState, XXHandshake

VECTOR = json.loads((Path(__file__).parent / "cacophony_xx.json").read_text())["vector"]
h = bytes.fromhex


def _pair() -> tuple[XXHandshake, XXHandshake]:
    i = XXHandshake(
        initiator=True,
        static_secret=h(VECTOR["init_static"]),
        ephemeral_secret=h(VECTOR["init_ephemeral"]),
        prologue=h(VECTOR["init_prologue"]),
    )
    r = XXHandshake(
        initiator=False,
        static_secret=h(VECTOR["resp_static"]),
        ephemeral_secret=h(VECTOR["resp_ephemeral"]),
        prologue=h(VECTOR["resp_prologue"]),
    )
    return i, r


def test_protocol_name_is_exactly_hashlen() -> None:
    assert VECTOR["protocol_name"].encode() == PROTOCOL_NAME
    assert len(PROTOCOL_NAME) == 32


def test_cacophony_vector_handshake_and_transport_messages() -> None:
    i, r = _pair()
    msgs = VECTOR["messages"]
    order = [(i, r), (r, i), (i, r)]
    for (writer, reader), m in zip(order, msgs[:3], strict=True):
        wire = writer.write_message(h(m["payload"]))
        assert wire.hex() == m["ciphertext"]
        assert reader.read_message(wire) == h(m["payload"])
    assert i.complete and r.complete
    assert i.handshake_hash.hex() == VECTOR["handshake_hash"]
    assert r.handshake_hash.hex() == VECTOR["handshake_hash"]
    assert i.remote_static == r.static_public and r.remote_static == i.static_public
    i_send, i_recv = i.split()
    r_send, r_recv = r.split()
    # after the handshake the vector alternates responder, initiator, ... (nonces 0, 0, 1, 1, ...)
    for k, m in enumerate(msgs[3:]):
        send, recv = (r_send, i_recv) if k % 2 == 0 else (i_send, r_recv)
        wire = send.encrypt(b"", h(m["payload"]))
        assert wire.hex() == m["ciphertext"]
        assert recv.decrypt(b"", wire) == h(m["payload"])


def test_nonce_is_little_endian_so_the_second_frame_differs_from_big_endian() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    key = bytes(range(32))
    cs = CipherState(key)
    cs.encrypt(b"", b"first")
    second = cs.encrypt(b"", b"second")
    le = ChaCha20Poly1305(key).encrypt(b"\0" * 4 + (1).to_bytes(8, "little"), b"second", None)
    assert second == le


def test_tampered_handshake_message_fails_authentication() -> None:
    i, r = _pair()
    r.read_message(i.write_message(b""))
    m2 = bytearray(r.write_message(b"payload"))
    m2[40] ^= 1  # inside the encrypted static key
    with pytest.raises(HandshakeError, match="authenticate"):
        i.read_message(bytes(m2))


def test_messages_out_of_order_are_refused() -> None:
    i, r = _pair()
    with pytest.raises(HandshakeError, match="out of order"):
        r.write_message(b"")
    with pytest.raises(HandshakeError, match="out of order"):
        i.read_message(bytes(32))
    with pytest.raises(HandshakeError, match="not complete"):
        i.split()


@pytest.mark.parametrize(
    "bad",
    [
        bytes(32),
        b"\x01" + bytes(31),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
)
def test_low_order_remote_ephemeral_is_refused(bad: bytes) -> None:
    i, _ = _pair()
    i.write_message(b"")
    forged = bad + bytes(48) + bytes(16)
    with pytest.raises(HandshakeError, match="low order"):
        i.read_message(forged)


def test_short_messages_are_refused() -> None:
    i, r = _pair()
    with pytest.raises(HandshakeError, match="too short"):
        r.read_message(b"\x01" * 31)
    i.write_message(b"")
    with pytest.raises(HandshakeError, match="too short"):
        i.read_message(b"\x01" * 95)


def test_a_failed_decrypt_poisons_the_cipher() -> None:
    cs = CipherState(bytes(32))
    with pytest.raises(FrameError):
        cs.decrypt(b"", bytes(20))
    with pytest.raises(FrameError, match="failed earlier"):
        cs.decrypt(b"", bytes(20))
    assert "key" not in repr(cs).replace("keyed", "")
