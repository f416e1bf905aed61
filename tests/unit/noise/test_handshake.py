"""The libp2p Noise handshake as kms runs it: sizes and bytes from NOISE.md (checked there
against a live v0.40.0 node), the payload signature vector, and the peer-ID pin."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kms.errors import FrameError, HandshakeError, PeerMismatch
from kms.identity import identity_public_key
from kms.noise.handshake import NoiseHandshake, NoiseHandshakeState
from kms.noise.payload import SIG_PREFIX, encode_payload, verify_payload
from kms.noise.peerid import ed25519_key_proto, peer_id_from_ed25519
from kms.noise.state import x25519_public

NODE_SEED = bytes.fromhex("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
KMS_SEED = b"\x42" * 32
NODE_ID = "12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf"
KMS_ID = "12D3KooWC4T1AXU2s2YBgGJ2FeaYVtsKoHZWJeubnWe9SnuSE7Zb"


def _pair(pin: str | None = NODE_ID) -> tuple[NoiseHandshake, NoiseHandshake]:
    kms = NoiseHandshake(KMS_SEED, initiator=True, expected_peer_id=pin)
    node = NoiseHandshake(NODE_SEED, initiator=False)
    return kms, node


def test_payload_encoder_matches_the_vector_the_live_node_accepted() -> None:
    static_pub = x25519_public(bytes(range(1, 33)))
    assert static_pub.hex() == "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"
    payload = encode_payload(Ed25519PrivateKey.from_private_bytes(KMS_SEED), static_pub)
    assert len(payload) == 104
    assert payload[:6] == bytes.fromhex("0a2408011220")
    assert payload[38:40] == b"\x12\x40"
    assert payload[40:].hex() == (
        "07a8d673f8f84e67dc9a7e2e4f9f1e9d4cc0e062bd83eacefea65952cfe163b3"
        "8188a5a5b898e609d7e88fd83a6a08497857223702cf2aa73ce932c1cd6bcf05"
    )
    assert verify_payload(payload, static_pub).peer_id == KMS_ID


def test_node_style_payload_with_empty_extensions_is_accepted() -> None:
    static_pub = x25519_public(b"\x07" * 32)
    payload = encode_payload(Ed25519PrivateKey.from_private_bytes(NODE_SEED), static_pub)
    assert verify_payload(payload + b"\x22\x00", static_pub).peer_id == NODE_ID
    # unknown fields of every wire type are skipped
    extra = b"\x28\x05" + b"\x31" + bytes(8) + b"\x3d" + bytes(4) + b"\x42\x01x"
    assert verify_payload(extra + payload, static_pub).peer_id == NODE_ID


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda p, k: p[:38], "no identity signature"),
        (lambda p, k: p[38:], "no identity key"),
        (lambda p, k: p + p[38:], "repeated field 2"),
        (lambda p, k: p[:-1] + bytes([p[-1] ^ 1]), "does not verify"),
        (lambda p, k: p[:2] + b"\x08\x02" + p[4:], "Secp256k1"),
        (lambda p, k: p + b"\x22\x05", "runs past"),
        (lambda p, k: p + b"\x23", "wire type 3"),
        (lambda p, k: p + b"\x00\x00", "field number 0"),
        (lambda p, k: p + b"\x22\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "overlong"),
        (lambda p, k: p + b"\x22" + bytes([0x80, 0x80, 0x01]) + bytes(9000), "too long"),
    ],
)
def test_bad_payloads_are_refused(mutate: Callable[[bytes, bytes], bytes], why: str) -> None:
    static_pub = x25519_public(b"\x07" * 32)
    payload = encode_payload(Ed25519PrivateKey.from_private_bytes(NODE_SEED), static_pub)
    with pytest.raises(HandshakeError, match=why):
        verify_payload(mutate(payload, static_pub), static_pub)


def test_signature_over_another_static_key_is_refused() -> None:
    payload = encode_payload(Ed25519PrivateKey.from_private_bytes(NODE_SEED), b"\x01" * 32)
    with pytest.raises(HandshakeError, match="does not verify"):
        verify_payload(payload, b"\x02" * 32)
    assert SIG_PREFIX == b"noise-libp2p-static-key:"


def test_full_handshake_wire_sizes_and_identities() -> None:
    kms, node = _pair()
    m1 = kms.data_to_send()
    assert len(m1) == 34 and m1[:2] == b"\x00\x20"
    node.receive_data(m1)
    m2 = node.data_to_send()
    assert len(m2) == 204 and m2[:2] == (202).to_bytes(2, "big")
    kms.receive_data(m2)
    m3 = kms.data_to_send()
    assert len(m3) == 170 and m3[:2] == (168).to_bytes(2, "big")
    assert kms.done
    node.receive_data(m3)
    assert node.done
    a, b = kms.result(), node.result()
    assert a.remote_peer_id == NODE_ID and a.remote_public_key == identity_public_key(NODE_SEED)
    assert b.remote_peer_id == KMS_ID and kms.local_peer_id == KMS_ID
    # transport: initiator sends with k1, responder receives with k1
    assert b.stream.receive_data(a.stream.seal(b"hello")) == b"hello"
    assert a.stream.receive_data(b.stream.seal(b"world")) == b"world"


def test_one_byte_at_a_time() -> None:
    kms, node = _pair()
    for byte in kms.data_to_send():
        node.receive_data(bytes([byte]))
    for byte in node.data_to_send():
        assert not kms.done
        kms.receive_data(bytes([byte]))
    for byte in kms.data_to_send():
        node.receive_data(bytes([byte]))
    assert kms.done and node.done


def test_wrong_node_is_dropped_before_message_3() -> None:
    kms, node = _pair(pin=KMS_ID)  # pin someone else
    node.receive_data(kms.data_to_send())
    with pytest.raises(PeerMismatch, match=f"the node is {NODE_ID}, expected {KMS_ID}"):
        kms.receive_data(node.data_to_send())
    assert kms.data_to_send() == b""  # nothing of ours goes out: not even our identity
    assert kms.state is NoiseHandshakeState.FAILED
    with pytest.raises(HandshakeError, match="already failed"):
        kms.receive_data(b"\x00")


def test_no_pin_accepts_any_authenticated_node() -> None:
    kms, node = _pair(pin=None)
    node.receive_data(kms.data_to_send())
    kms.receive_data(node.data_to_send())
    assert kms.done and kms.result().remote_peer_id == NODE_ID


def test_responder_data_before_message_3_is_refused() -> None:
    kms, node = _pair()
    node.receive_data(kms.data_to_send())
    with pytest.raises(HandshakeError, match="before our last handshake message"):
        kms.receive_data(node.data_to_send() + b"\x00\x01x")


def test_initiator_data_right_after_message_3_reaches_the_stream() -> None:
    kms, node = _pair()
    node.receive_data(kms.data_to_send())
    kms.receive_data(node.data_to_send())
    m3 = kms.data_to_send()
    node.receive_data(m3 + kms.result().stream.seal(b"early"))
    assert node.result().initial_plaintext == b"early"


def test_oversized_handshake_message_is_refused_from_its_header() -> None:
    kms, _ = _pair()
    kms.data_to_send()
    with pytest.raises(HandshakeError, match="too long"):
        kms.receive_data(b"\xff\xff" + bytes(10))
    assert kms.buffered == 0


def test_message_1_with_a_payload_is_refused_by_the_test_node() -> None:
    node = NoiseHandshake(NODE_SEED, initiator=False)
    with pytest.raises(HandshakeError, match="must be 32 bytes"):
        node.receive_data(b"\x00\x21" + bytes(33))


def test_tampered_message_3_fails() -> None:
    kms, node = _pair()
    node.receive_data(kms.data_to_send())
    kms.receive_data(node.data_to_send())
    m3 = bytearray(kms.data_to_send())
    m3[-1] ^= 1
    with pytest.raises(HandshakeError):
        node.receive_data(bytes(m3))


def test_malformed_pin_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        NoiseHandshake(KMS_SEED, initiator=True, expected_peer_id="abc")
    assert peer_id_from_ed25519(identity_public_key(KMS_SEED)) == KMS_ID
    assert ed25519_key_proto(identity_public_key(KMS_SEED))[:4] == b"\x08\x01\x12\x20"
    assert issubclass(PeerMismatch, HandshakeError) and not issubclass(FrameError, HandshakeError)
