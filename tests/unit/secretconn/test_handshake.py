"""The handshake state machine: upstream vectors, in-memory pairs, and every rejection rule."""

from __future__ import annotations

import os
from typing import Any

import pytest

from kms.errors import FrameError, HandshakeError
from kms.secretconn.cipher import RecvCipher
from kms.secretconn.handshake import (
    Handshake,
    HandshakeState,
    encode_auth_sig,
    encode_ephemeral_message,
    peer_id,
)
from tests.unit.secretconn._peer import RawPeer


def _alice_bob(sc: dict[str, Any], **kwargs: Any) -> tuple[Handshake, Handshake]:
    u = sc["upstream_handshake"]
    alice = Handshake(
        bytes.fromhex(u["alice"]["ed25519_secret_seed"]),
        ephemeral_secret=bytes.fromhex(u["alice"]["x25519_secret_unclamped"]),
        **kwargs,
    )
    bob = Handshake(
        bytes.fromhex(u["bob"]["ed25519_secret_seed"]),
        ephemeral_secret=bytes.fromhex(u["bob"]["x25519_secret_unclamped"]),
    )
    return alice, bob


def _run_pair(a: Handshake, b: Handshake, *, step: int | None = None) -> None:
    """Drive two machines against each other, write-then-read, in chunks of `step`."""
    for _ in range(4):
        a_out, b_out = a.data_to_send(), b.data_to_send()
        for src, dst in ((a_out, b), (b_out, a)):
            if not src or dst.done:
                continue
            size = step or len(src)
            for i in range(0, len(src), size):
                dst.receive_data(src[i : i + size])
        if a.done and b.done:
            # Flush anything still queued (the last AuthSig) to the other side.
            assert a.data_to_send() == b"" and b.data_to_send() == b""
            return
    raise AssertionError("handshake did not finish")


def _fresh() -> Handshake:
    return Handshake(os.urandom(32))


def _peer_reached_auth(hs: Handshake, peer: RawPeer) -> None:
    """Exchange first messages between `hs` and a hand-driven peer."""
    peer.on_first_message(hs.data_to_send())
    hs.receive_data(peer.first_message())
    assert hs.state is HandshakeState.AWAIT_AUTH_SIG


# -- upstream and derived vectors ---------------------------------------------------


def test_first_messages_are_the_35_byte_vectors(sc_vectors: dict[str, Any]) -> None:
    alice, bob = _alice_bob(sc_vectors)
    u, d = sc_vectors["upstream_handshake"], sc_vectors["derived_handshake"]
    alice_first, bob_first = alice.data_to_send(), bob.data_to_send()
    assert alice_first.hex() == u["alice"]["initial_message_wire"]
    assert bob_first.hex() == d["bob_initial_message_wire"]
    assert len(alice_first) == len(bob_first) == 35
    assert alice.local_ephemeral_public.hex() == u["alice"]["x25519_public"]
    assert bob.local_ephemeral_public.hex() == u["bob"]["x25519_public"]
    assert alice.local_public_key.hex() == u["alice"]["ed25519_public"]
    assert alice.data_to_send() == b""  # drained


def test_sealed_auth_sig_frames_match_the_derived_vectors(sc_vectors: dict[str, Any]) -> None:
    alice, bob = _alice_bob(sc_vectors)
    d = sc_vectors["derived_handshake"]
    alice_first, bob_first = alice.data_to_send(), bob.data_to_send()
    alice.receive_data(bob_first)
    bob.receive_data(alice_first)
    alice_auth, bob_auth = alice.data_to_send(), bob.data_to_send()
    assert alice_auth.hex() == d["alice_first_sealed_frame_auth_sig"]
    assert bob_auth.hex() == d["bob_first_sealed_frame_auth_sig"]
    alice.receive_data(bob_auth)
    bob.receive_data(alice_auth)
    assert alice.done and bob.done


def test_auth_sig_plaintexts_are_the_103_byte_vectors(sc_vectors: dict[str, Any]) -> None:
    # Open each side's first sealed frame with the other side's receive key (from the vectors).
    alice, bob = _alice_bob(sc_vectors)
    u, d = sc_vectors["upstream_handshake"], sc_vectors["derived_handshake"]
    alice_first, bob_first = alice.data_to_send(), bob.data_to_send()
    alice.receive_data(bob_first)
    bob.receive_data(alice_first)
    alice_auth, bob_auth = alice.data_to_send(), bob.data_to_send()
    alice_plain = bytes(RecvCipher(bytes.fromhex(d["bob_recv_key"])).open_frame(alice_auth))
    bob_plain = bytes(RecvCipher(bytes.fromhex(d["alice_recv_key"])).open_frame(bob_auth))
    assert len(alice_plain) == len(bob_plain) == 103
    assert alice_plain.hex() == u["alice"]["auth_sig_message_plaintext_with_uvarint_prefix"]
    assert bob_plain.hex() == u["bob"]["auth_sig_message_plaintext_with_uvarint_prefix"]


def test_vector_pair_authenticates_each_other(sc_vectors: dict[str, Any]) -> None:
    alice, bob = _alice_bob(sc_vectors)
    _run_pair(alice, bob)
    u = sc_vectors["upstream_handshake"]
    assert alice.result().remote_public_key.hex() == u["bob"]["ed25519_public"]
    assert bob.result().remote_public_key.hex() == u["alice"]["ed25519_public"]
    assert bob.result().remote_peer_id == peer_id(bytes.fromhex(u["alice"]["ed25519_public"]))


def test_peer_id_vector(sc_vectors: dict[str, Any]) -> None:
    v = sc_vectors["peer_id"]
    assert peer_id(bytes.fromhex(v["ed25519_public"])) == v["node_id"]
    with pytest.raises(ValueError):
        peer_id(bytes(33))


# -- in-memory pairs -------------------------------------------------------------------


@pytest.mark.parametrize("step", [None, 1, 7, 1044])
def test_pair_completes_and_exchanges_data_in_any_chunking(step: int | None) -> None:
    dialer, listener = _fresh(), _fresh()
    _run_pair(dialer, listener, step=step)
    d, lst = dialer.result(), listener.result()
    assert d.remote_public_key == listener.local_public_key
    assert lst.remote_public_key == dialer.local_public_key
    assert d.initial_plaintext == lst.initial_plaintext == b""
    for message in (b"request", bytes(5000), b"x"):
        wire = d.stream.seal(message)
        got = bytearray()
        size = step or len(wire)
        for i in range(0, len(wire), size):
            got += lst.stream.receive_data(wire[i : i + size])
        assert bytes(got) == message
        assert d.stream.receive_data(lst.stream.seal(message[::-1])) == message[::-1]


def test_data_arriving_with_the_auth_sig_is_kept_for_the_stream() -> None:
    hs, peer = _fresh(), RawPeer()
    peer_first = peer.first_message()
    peer.on_first_message(hs.data_to_send())
    wire = peer_first + peer.seal(peer.honest_auth_sig()) + peer.seal(b"early request")
    hs.receive_data(wire)
    assert hs.done
    assert hs.result().initial_plaintext == b"early request"
    assert len(hs.data_to_send()) == 1044  # our AuthSig still goes out


def test_auth_sig_split_across_two_frames_is_accepted() -> None:
    hs, peer = _fresh(), RawPeer()
    _peer_reached_auth(hs, peer)
    auth = peer.honest_auth_sig()
    hs.receive_data(peer.seal(auth[:50]))
    assert not hs.done
    hs.receive_data(peer.seal(auth[50:]))
    assert hs.done
    assert hs.result().remote_public_key == peer.identity_public


def test_expected_peer_id_accepts_the_right_peer() -> None:
    listener = _fresh()
    dialer = Handshake(os.urandom(32), expected_peer_id=peer_id(listener.local_public_key).upper())
    _run_pair(dialer, listener)
    assert dialer.done


def test_result_before_completion_is_an_error() -> None:
    with pytest.raises(HandshakeError):
        _fresh().result()


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError):
        Handshake(bytes(31))
    with pytest.raises(ValueError):
        Handshake(bytes(32), ephemeral_secret=bytes(16))
    with pytest.raises(ValueError):
        Handshake(bytes(32), expected_peer_id="not-a-node-id")


def test_ephemeral_secret_comes_from_injected_randomness() -> None:
    calls: list[int] = []

    def fixed(n: int) -> bytes:
        calls.append(n)
        return bytes([7]) * n

    a = Handshake(bytes(32), random_bytes=fixed)
    b = Handshake(bytes(32), ephemeral_secret=bytes([7]) * 32)
    assert calls == [32]
    assert a.data_to_send() == b.data_to_send()


# -- rejections ---------------------------------------------------------------------------


def _low_order_keys(sc: dict[str, Any]) -> list[str]:
    v = sc["must_reject_ephemeral_keys"]
    return [p["hex"] for p in v["upstream_low_order_points"] + v["derived_high_bit_variants"]]


def test_there_are_14_must_reject_keys(sc_vectors: dict[str, Any]) -> None:
    assert len(set(_low_order_keys(sc_vectors))) == 14


@pytest.mark.parametrize("index", range(14))
def test_low_order_ephemeral_key_is_rejected(index: int, sc_vectors: dict[str, Any]) -> None:
    key = bytes.fromhex(_low_order_keys(sc_vectors)[index])
    hs = _fresh()
    first = hs.data_to_send()
    with pytest.raises(HandshakeError, match="low order"):
        hs.receive_data(encode_ephemeral_message(key))
    assert hs.state is HandshakeState.FAILED
    assert len(first) == 35 and hs.data_to_send() == b""  # no AuthSig was produced


def test_our_own_ephemeral_key_reflected_back_is_rejected() -> None:
    hs = _fresh()
    with pytest.raises(HandshakeError, match="own ephemeral"):
        hs.receive_data(hs.data_to_send())


@pytest.mark.parametrize(
    "message",
    [
        b"\x23\x0a\x20" + bytes(range(1, 33)),  # wrong outer length
        b"\x22\x0a\x21" + bytes(range(1, 33)),  # wrong inner length
        b"\x22\x12\x20" + bytes(range(1, 33)),  # wrong field number
        b"\x21\x0a\x1f" + bytes(range(1, 32)),  # 31-byte key
        b"\x00",  # empty message
        b"\xff\xff\xff\xff\x0f",  # huge length
    ],
)
def test_malformed_first_message_is_rejected(message: bytes) -> None:
    hs = _fresh()
    with pytest.raises(HandshakeError, match="malformed"):
        hs.receive_data(message)


def test_malformed_first_message_is_rejected_at_the_first_wrong_byte() -> None:
    hs = _fresh()
    hs.receive_data(b"\x22")
    with pytest.raises(HandshakeError):
        hs.receive_data(b"\x0b")


def test_bad_auth_signature_is_rejected() -> None:
    hs, peer = _fresh(), RawPeer()
    _peer_reached_auth(hs, peer)
    auth = bytearray(peer.honest_auth_sig())
    auth[-1] ^= 0x01
    with pytest.raises(HandshakeError, match="does not verify"):
        hs.receive_data(peer.seal(bytes(auth)))
    assert hs.state is HandshakeState.FAILED


def test_signature_over_another_challenge_is_rejected() -> None:
    hs, peer = _fresh(), RawPeer()
    _peer_reached_auth(hs, peer)
    forged = encode_auth_sig(peer.identity_public, peer.identity.sign(b"\x00" * 32))
    with pytest.raises(HandshakeError, match="does not verify"):
        hs.receive_data(peer.seal(forged))


def test_someone_elses_key_with_our_peers_signature_is_rejected() -> None:
    hs, peer = _fresh(), RawPeer()
    _peer_reached_auth(hs, peer)
    other = RawPeer()
    swapped = encode_auth_sig(other.identity_public, peer.identity.sign(peer.challenge))
    with pytest.raises(HandshakeError, match="does not verify"):
        hs.receive_data(peer.seal(swapped))


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _pb(field: int, payload: bytes) -> bytes:
    return _uvarint((field << 3) | 2) + _uvarint(len(payload)) + payload


def _delimited(body: bytes) -> bytes:
    return _uvarint(len(body)) + body


@pytest.mark.parametrize(
    ("key_field", "key_len", "name"),
    [(2, 33, "secp256k1"), (3, 48, "bls12_381"), (5, 33, "secp256k1eth"), (9, 32, "field 9")],
)
def test_non_ed25519_identity_is_rejected(key_field: int, key_len: int, name: str) -> None:
    hs, peer = _fresh(), RawPeer()
    _peer_reached_auth(hs, peer)
    body = _pb(1, _pb(key_field, bytes(key_len))) + _pb(2, bytes(64))
    with pytest.raises(HandshakeError, match=f"{name} is not supported"):
        hs.receive_data(peer.seal(_delimited(body)))


@pytest.mark.parametrize("key_len", [0, 31, 33])
def test_ed25519_key_of_wrong_length_is_rejected(key_len: int) -> None:
    hs, peer = _fresh(), RawPeer()
    _peer_reached_auth(hs, peer)
    body = _pb(1, _pb(1, bytes(key_len))) + _pb(2, peer.identity.sign(peer.challenge))
    with pytest.raises(HandshakeError, match="expected 32"):
        hs.receive_data(peer.seal(_delimited(body)))


@pytest.mark.parametrize(
    ("body_builder", "match"),
    [
        (lambda k, s: _pb(2, s), "no public key"),
        (lambda k, s: _pb(1, _pb(1, k)), "no signature"),
        (lambda k, s: _pb(1, _pb(1, k)) + _pb(2, s[:63]), "expected 64"),
        (lambda k, s: _pb(1, _pb(1, k)) + _pb(2, s) + _pb(3, b""), "unexpected field 3"),
        (lambda k, s: _pb(1, _pb(1, k)) + _pb(2, s) + _pb(2, s), "repeated"),
        (lambda k, s: _pb(1, _pb(1, k) + _pb(1, k)) + _pb(2, s), "repeated"),
        (lambda k, s: _pb(1, b"") + _pb(2, s), "exactly one key"),
        (lambda k, s: _pb(1, _pb(1, k)) + b"\x10\x01", "wire type 0"),
        (lambda k, s: _pb(1, _pb(1, k)) + b"\x12\x41" + s, "past the end"),
        (lambda k, s: _pb(1, _pb(1, k)) + b"\x12", "truncated varint"),
    ],
)
def test_malformed_auth_sig_is_rejected(body_builder: Any, match: str) -> None:
    hs, peer = _fresh(), RawPeer()
    _peer_reached_auth(hs, peer)
    body = body_builder(peer.identity_public, peer.identity.sign(peer.challenge))
    with pytest.raises(HandshakeError, match=match):
        hs.receive_data(peer.seal(_delimited(body)))


def test_oversized_auth_sig_length_is_rejected_before_buffering() -> None:
    hs, peer = _fresh(), RawPeer()
    _peer_reached_auth(hs, peer)
    with pytest.raises(HandshakeError, match="too long"):
        hs.receive_data(peer.seal(b"\x80\x80\x04"))  # uvarint 65536


def test_wrong_peer_id_is_rejected() -> None:
    listener, impostor = _fresh(), _fresh()
    dialer = Handshake(os.urandom(32), expected_peer_id=peer_id(impostor.local_public_key))
    with pytest.raises(HandshakeError, match="not the expected"):
        _run_pair(dialer, listener)
    assert dialer.state is HandshakeState.FAILED


def test_garbage_instead_of_auth_frame_is_a_frame_error() -> None:
    hs, peer = _fresh(), RawPeer()
    _peer_reached_auth(hs, peer)
    with pytest.raises(FrameError):
        hs.receive_data(os.urandom(1044))
    assert hs.state is HandshakeState.FAILED


def test_auth_frame_from_a_different_session_is_rejected() -> None:
    hs, peer = _fresh(), RawPeer()
    _peer_reached_auth(hs, peer)
    other_hs, other_peer = _fresh(), RawPeer(bytes(peer.identity.private_bytes_raw()))
    _peer_reached_auth(other_hs, other_peer)
    with pytest.raises(FrameError):
        hs.receive_data(other_peer.seal(other_peer.honest_auth_sig()))


def test_failed_handshake_stays_failed() -> None:
    hs = _fresh()
    with pytest.raises(HandshakeError):
        hs.receive_data(b"\x00")
    with pytest.raises(HandshakeError, match="already failed"):
        hs.receive_data(b"\x22")


def test_feeding_a_finished_handshake_is_refused() -> None:
    a, b = _fresh(), _fresh()
    _run_pair(a, b)
    with pytest.raises(HandshakeError, match="already complete"):
        a.receive_data(b"more")
