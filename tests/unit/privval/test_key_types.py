"""Every tendermint.crypto.PublicKey variant v0.39/v0.40 define (checked against cometbft
v0.40.0 proto/tendermint/crypto/keys.proto: ed25519 = 1, secp256k1 = 2, bls12381 = 3,
mldsa65 = 4, secp256k1eth = 5) decodes on every v0.x dialect; v0.40 can encode them all,
older dialects only the two their nodes know."""

from __future__ import annotations

import pytest

from kms.errors import EncodeError
from kms.privval.codec import decode_response, encode
from kms.privval.messages import Dialect, PubKeyResponse

# (key type, field number, a key of that type's length)
VARIANTS = [
    ("ed25519", 1, b"\x01" * 32),
    ("secp256k1", 2, b"\x02" + b"\x03" * 32),
    ("bls12381", 3, b"\x04" * 48),
    ("mldsa65", 4, b"\x05" * 1952),
    ("secp256k1eth", 5, b"\x04" + b"\x06" * 64),
]
V0 = [Dialect.V0_34, Dialect.V0_37, Dialect.V0_38, Dialect.V0_40]


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: int, data: bytes) -> bytes:
    return bytes([tag]) + _uvarint(len(data)) + data


def _wire(field: int, key: bytes) -> bytes:
    """Message{pub_key_response: PubKeyResponse{pub_key: PublicKey{<field>: key}}}, by hand."""
    public_key = _ld(field << 3 | 2, key)
    return _ld(0x12, _ld(0x0A, public_key))


@pytest.mark.parametrize("dialect", V0, ids=lambda d: d.value)
@pytest.mark.parametrize(("key_type", "field", "key"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_every_variant_decodes(dialect: Dialect, key_type: str, field: int, key: bytes) -> None:
    resp = decode_response(_wire(field, key), dialect)
    assert resp == PubKeyResponse(pub_key=key, key_type=key_type)


@pytest.mark.parametrize(("key_type", "field", "key"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_v0_40_encodes_every_variant_byte_for_byte(key_type: str, field: int, key: bytes) -> None:
    assert encode(PubKeyResponse(pub_key=key, key_type=key_type), Dialect.V0_40) == _wire(
        field, key
    )


@pytest.mark.parametrize("dialect", [Dialect.V0_34, Dialect.V0_37, Dialect.V0_38])
@pytest.mark.parametrize("key_type", ["bls12381", "mldsa65", "secp256k1eth"])
def test_older_dialects_refuse_to_send_keys_their_nodes_cannot_read(
    dialect: Dialect, key_type: str
) -> None:
    with pytest.raises(EncodeError, match=f"key type '{key_type}' cannot be sent"):
        encode(PubKeyResponse(pub_key=b"\x01" * 48, key_type=key_type), dialect)


@pytest.mark.parametrize(("key_type", "field", "key"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_v1_carries_any_type_by_name(key_type: str, field: int, key: bytes) -> None:
    resp = PubKeyResponse(pub_key=key, key_type=key_type)
    assert decode_response(encode(resp, Dialect.V1), Dialect.V1) == resp
