"""Ed25519 expanded keys, the wrap codec and the object encodings."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.errors import SimObjectFormatError, SimWrapAuthError
from kms.sim.yubihsm import ed25519
from kms.sim.yubihsm.defs import Alg, Cap, ObjType, Origin
from kms.sim.yubihsm.objects import (
    WRAP_FORMAT_LEGACY,
    WRAP_FORMAT_WITH_SEED,
    SimObject,
    pack_label,
    unwrap_object,
    validate_secret,
    wrap_object,
)

RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")


def _ed_obj(secret: bytes, obj_id: int = 4, caps: int = Cap.SIGN_EDDSA) -> SimObject:
    return SimObject(
        obj_id,
        ObjType.ASYMMETRIC_KEY,
        Alg.EC_ED25519,
        pack_label("validator"),
        1,
        caps,
        0,
        Origin.IMPORTED,
        0,
        secret,
    )


def _wrap_key(key: bytes = b"k" * 32, delegated: int = Cap.ALL) -> SimObject:
    return SimObject(
        1,
        ObjType.WRAP_KEY,
        Alg.AES256_CCM_WRAP,
        pack_label("wrap"),
        0xFFFF,
        Cap.EXPORT_WRAPPED | Cap.IMPORT_WRAPPED,
        delegated,
        Origin.IMPORTED,
        0,
        key,
    )


def test_expanded_key_matches_the_rfc8032_vector_from_yubihsm_md() -> None:
    expanded = ed25519.expand_seed(RFC8032_SEED)
    assert expanded[:32].hex() == "4fe94d9006f020a5a3c080d96827fffd3c010ac0f12e7a42cb33284f86837c30"
    assert expanded[32:64].hex() == (
        "9b4f0afe280b746a778684e75442502057b7473a03f08f96f5a38e9287e01f8f"
    )
    assert expanded[64:].hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert ed25519.expanded_is_consistent(expanded)


def test_rfc8032_test1_signature_from_the_expanded_key() -> None:
    sig = ed25519.sign_expanded(ed25519.expand_seed(RFC8032_SEED), b"")
    assert sig.hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


@settings(max_examples=15, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300))
def test_expanded_signing_equals_the_seed_signature(seed: bytes, message: bytes) -> None:
    expected = Ed25519PrivateKey.from_private_bytes(seed).sign(message)
    assert ed25519.sign_expanded(ed25519.expand_seed(seed), message) == expected


def test_an_expanded_key_with_a_foreign_public_key_is_inconsistent() -> None:
    a = ed25519.expand_seed(RFC8032_SEED)
    b = ed25519.expand_seed(b"\x01" * 32)
    assert not ed25519.expanded_is_consistent(a[:64] + b[64:])
    with pytest.raises(SimObjectFormatError):
        validate_secret(ObjType.ASYMMETRIC_KEY, Alg.EC_ED25519, a[:64] + b[64:])


def test_object_info_layout_is_the_66_byte_library_format() -> None:
    info = _ed_obj(RFC8032_SEED).info_bytes()
    assert len(info) == 66
    caps, obj_id, size, domains, typ, alg, seq, origin, label, delegated = struct.unpack(
        "!QHHHBBBB40sQ", info
    )
    assert (caps, obj_id, size, domains, typ, alg, seq, origin) == (
        Cap.SIGN_EDDSA,
        4,
        96,
        1,
        ObjType.ASYMMETRIC_KEY,
        Alg.EC_ED25519,
        0,
        Origin.IMPORTED,
    )
    assert label.rstrip(b"\0") == b"validator"
    assert delegated == 0


def test_legacy_wrap_round_trip_loses_the_seed_but_signs_the_same() -> None:
    obj = _ed_obj(RFC8032_SEED)
    blob = wrap_object(_wrap_key(), obj, WRAP_FORMAT_LEGACY, b"n" * 13)
    assert len(blob) == 13 + 59 + 96 + 16
    back = unwrap_object(_wrap_key(), blob)
    assert back.secret == ed25519.expand_seed(RFC8032_SEED)
    assert back.sign_eddsa(b"msg") == obj.sign_eddsa(b"msg")
    assert (back.id, back.label, back.domains, back.capabilities) == (
        obj.id,
        obj.label,
        obj.domains,
        obj.capabilities,
    )


def test_seed_wrap_format_keeps_the_seed() -> None:
    blob = wrap_object(_wrap_key(), _ed_obj(RFC8032_SEED), WRAP_FORMAT_WITH_SEED, b"n" * 13)
    assert unwrap_object(_wrap_key(), blob).secret == RFC8032_SEED


def test_wrap_header_is_59_bytes_in_the_documented_order() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    blob = wrap_object(_wrap_key(), _ed_obj(RFC8032_SEED), WRAP_FORMAT_LEGACY, b"n" * 13)
    plain = AESCCM(b"k" * 32, tag_length=16).decrypt(blob[:13], blob[13:], None)
    fields = struct.unpack("!BQHHHBBBB40s", plain[:59])
    assert fields[:9] == (
        Alg.AES256_CCM_WRAP,
        Cap.SIGN_EDDSA,
        4,
        96,
        1,
        ObjType.ASYMMETRIC_KEY,
        Alg.EC_ED25519,
        0,
        Origin.IMPORTED,
    )


def test_a_tampered_or_foreign_key_blob_fails_authentication() -> None:
    blob = bytearray(wrap_object(_wrap_key(), _ed_obj(RFC8032_SEED), 0, b"n" * 13))
    blob[20] ^= 1
    with pytest.raises(SimWrapAuthError):
        unwrap_object(_wrap_key(), bytes(blob))
    good = wrap_object(_wrap_key(), _ed_obj(RFC8032_SEED), 0, b"n" * 13)
    with pytest.raises(SimWrapAuthError):
        unwrap_object(_wrap_key(b"x" * 32), good)


def test_json_round_trip_of_each_secret_kind() -> None:
    objs = [
        _ed_obj(RFC8032_SEED),
        _ed_obj(ed25519.expand_seed(RFC8032_SEED), obj_id=5),
        _wrap_key(),
        SimObject(
            2,
            ObjType.AUTHENTICATION_KEY,
            Alg.AES128_YUBICO_AUTHENTICATION,
            pack_label("auth"),
            1,
            Cap.SIGN_EDDSA,
            0,
            Origin.IMPORTED,
            3,
            b"e" * 16 + b"m" * 16,
        ),
    ]
    for obj in objs:
        assert SimObject.from_json(obj.to_json()) == obj


def test_labels_longer_than_40_bytes_are_refused() -> None:
    with pytest.raises(SimObjectFormatError):
        pack_label("x" * 41)
