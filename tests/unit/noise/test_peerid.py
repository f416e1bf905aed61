"""libp2p peer IDs: NOISE.md §3 vectors (checked there against cometbft v0.40.0's
`show-node-id --libp2p`), the PublicKey protobuf, and what a pinned ID may look like."""

from __future__ import annotations

import pytest

from kms.identity import identity_public_key
from kms.noise.peerid import (
    b58decode,
    b58encode,
    decode_public_key,
    ed25519_key_proto,
    parse_peer_id,
    peer_id_from_ed25519,
)

VECTORS = [
    (
        bytes.fromhex("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"),
        "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664",
        "12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf",
    ),
    (
        b"\x42" * 32,
        "2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12",
        "12D3KooWC4T1AXU2s2YBgGJ2FeaYVtsKoHZWJeubnWe9SnuSE7Zb",
    ),
]


@pytest.mark.parametrize(("seed", "pub", "peer"), VECTORS)
def test_peer_id_vectors_from_the_real_binary(seed: bytes, pub: str, peer: str) -> None:
    key = identity_public_key(seed)
    assert key.hex() == pub
    assert peer_id_from_ed25519(key) == peer
    assert parse_peer_id(peer) == key


def test_key_proto_and_round_trip() -> None:
    key = bytes(range(32))
    proto = ed25519_key_proto(key)
    assert proto[:4] == bytes.fromhex("08011220") and len(proto) == 36
    assert decode_public_key(proto) == key
    # field order does not matter to protobuf
    assert decode_public_key(b"\x12\x20" + key + b"\x08\x01") == key


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x08\x02\x12\x21\x02" + bytes(32), "Secp256k1 is not supported"),
        (b"\x08\x00\x12\x20" + bytes(32), "RSA is not supported"),
        (b"\x08\x07\x12\x20" + bytes(32), "type 7 is not supported"),
        (b"\x08\x01\x12\x1f" + bytes(31), "31 bytes"),
        (b"\x08\x01", "needs both"),
        (b"\x08\x01\x12\x40" + bytes(32), "runs past"),
        (b"\x08\x01\x08\x01\x12\x20" + bytes(32), "repeated"),
        (b"\x1a\x00\x08\x01\x12\x20" + bytes(32), "unexpected"),
        (b"\x08\xff", "truncated"),
    ],
)
def test_bad_public_keys_are_refused_by_name(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode_public_key(data)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("65b60673d6ed884bf01c2c222d82ada0740f29ac", "40-hex CometBFT node ID"),
        ("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "not the peer ID of an Ed25519 key"),
        ("12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9Cq0f", "not a base58btc character"),
        ("12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqY", "not the peer ID"),
        ("", "52 base58"),
        ("1" * 200, "52 base58"),
    ],
)
def test_bad_pins_are_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_peer_id(text)


def test_base58_round_trip_keeps_leading_zeros() -> None:
    for data in [b"", b"\x00", b"\x00\x00\x01", bytes(range(40))]:
        assert b58decode(b58encode(data)) == data
