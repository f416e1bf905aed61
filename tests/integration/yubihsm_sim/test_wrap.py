"""Export/import under wrap, across two simulator instances, with the device's permission rules."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from yubihsm.core import AuthSession, YubiHsm
from yubihsm.defs import ALGORITHM, CAPABILITY, COMMAND, ERROR, OBJECT, ORIGIN
from yubihsm.exceptions import YubiHsmDeviceError
from yubihsm.objects import AsymmetricKey, AuthenticationKey, WrapKey

from kms.sim.yubihsm import SimulatedHsm
from tests.yubihsm_typed import ed25519_public_key

from .conftest import connect

EXPORTABLE = CAPABILITY.SIGN_EDDSA | CAPABILITY.EXPORTABLE_UNDER_WRAP
WRAP_CAPS = CAPABILITY.EXPORT_WRAPPED | CAPABILITY.IMPORT_WRAPPED
WRAP_SECRET = bytes(range(32))


@pytest.fixture
def sim_b() -> Iterator[SimulatedHsm]:
    with SimulatedHsm(serial=1000002) as s:
        yield s


@pytest.fixture
def session_b(sim_b: SimulatedHsm) -> AuthSession:
    return connect(sim_b).create_session_derived(1, "password")


def put_wrap(
    session: AuthSession,
    caps: CAPABILITY = WRAP_CAPS,
    delegated: CAPABILITY = EXPORTABLE,
    key_id: int = 0x10,
    key: bytes = WRAP_SECRET,
) -> WrapKey:
    return WrapKey.put(
        session, key_id, "wrap", 0xFFFF, caps, ALGORITHM.AES256_CCM_WRAP, delegated, key
    )


def err_code(e: pytest.ExceptionInfo[YubiHsmDeviceError]) -> ERROR:
    return e.value.code


def test_export_from_a_import_into_b_signs_identically(
    session: AuthSession, session_b: AuthSession
) -> None:
    sk = Ed25519PrivateKey.generate()
    key_a = AsymmetricKey.put(session, 4, "validator", 1, EXPORTABLE, sk)
    blob = put_wrap(session).export_wrapped(key_a)
    assert blob != put_wrap(session, key_id=0x11).export_wrapped(key_a)  # random nonce

    key_b = put_wrap(session_b).import_wrapped(blob)
    assert isinstance(key_b, AsymmetricKey) and key_b.id == 4
    info = key_b.get_info()
    assert info.origin == ORIGIN.IMPORTED | ORIGIN.IMPORTED_WRAPPED
    assert (info.label, info.domains, info.capabilities) == ("validator", 1, EXPORTABLE)
    for msg in (b"", b"prevote h=5", os.urandom(500)):
        assert key_b.sign_eddsa(msg) == key_a.sign_eddsa(msg) == sk.sign(msg)
    assert ed25519_public_key(key_b).public_bytes_raw() == sk.public_key().public_bytes_raw()


def test_generated_key_exported_and_reimported_keeps_generated_origin(
    session: AuthSession,
) -> None:
    key = AsymmetricKey.generate(session, 5, "gen", 1, EXPORTABLE, ALGORITHM.EC_ED25519)
    wrap = put_wrap(session)
    blob = wrap.export_wrapped(key)
    sig = key.sign_eddsa(b"m")
    key.delete()
    again = wrap.import_wrapped(blob)
    assert isinstance(again, AsymmetricKey)
    assert again.get_info().origin == ORIGIN.GENERATED | ORIGIN.IMPORTED_WRAPPED
    assert again.sign_eddsa(b"m") == sig


def test_seed_format_round_trip_across_instances(
    session: AuthSession, session_b: AuthSession, sim_b: SimulatedHsm
) -> None:
    sk = Ed25519PrivateKey.generate()
    key = AsymmetricKey.put(session, 6, "seeded", 1, EXPORTABLE, sk)
    blob = put_wrap(session).export_wrapped(key, seed=True)
    put_wrap(session_b).import_wrapped(blob)
    stored = sim_b.device.get_object(6, OBJECT.ASYMMETRIC_KEY)
    assert stored is not None and stored.secret == sk.private_bytes_raw()


def test_reimport_of_an_existing_object_is_object_exists(session: AuthSession) -> None:
    key = AsymmetricKey.put(session, 7, "k", 1, EXPORTABLE, Ed25519PrivateKey.generate())
    wrap = put_wrap(session)
    blob = wrap.export_wrapped(key)
    with pytest.raises(YubiHsmDeviceError) as e:
        wrap.import_wrapped(blob)
    assert err_code(e) == ERROR.OBJECT_EXISTS


def test_auth_and_wrap_keys_can_be_wrapped_too(
    session: AuthSession, session_b: AuthSession, sim_b: SimulatedHsm
) -> None:
    all_caps = CAPABILITY.ALL
    wrap_a = put_wrap(session, delegated=all_caps)
    auth = AuthenticationKey.put_derived(
        session, 2, "op", 1, EXPORTABLE, CAPABILITY.SIGN_EDDSA, "pw"
    )
    other_wrap = put_wrap(session, caps=CAPABILITY.EXPORTABLE_UNDER_WRAP, key_id=0x20)
    wrap_b = put_wrap(session_b, delegated=all_caps)
    wrap_b.import_wrapped(wrap_a.export_wrapped(auth))
    wrap_b.import_wrapped(wrap_a.export_wrapped(other_wrap))
    assert connect(sim_b).create_session_derived(2, "pw").sid is not None
    imported = sim_b.device.get_object(0x20, OBJECT.WRAP_KEY)
    assert imported is not None and imported.secret == WRAP_SECRET


def test_a_blob_under_another_wrap_key_or_tampered_is_invalid_data(
    session: AuthSession, session_b: AuthSession
) -> None:
    key = AsymmetricKey.put(session, 8, "k", 1, EXPORTABLE, Ed25519PrivateKey.generate())
    blob = put_wrap(session).export_wrapped(key)
    other = put_wrap(session_b, key=os.urandom(32))
    with pytest.raises(YubiHsmDeviceError) as e:
        other.import_wrapped(blob)
    assert err_code(e) == ERROR.INVALID_DATA
    same = put_wrap(session_b, key_id=0x30)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(YubiHsmDeviceError) as e:
        same.import_wrapped(tampered)
    assert err_code(e) == ERROR.INVALID_DATA
    same.import_wrapped(blob)


# The cases of upstream tests/device/test_wrap.py::test_import_wrap_permissions, for Ed25519.


def test_export_needs_the_target_capabilities_delegated_to_the_wrap_key(
    session: AuthSession,
) -> None:
    key = AsymmetricKey.put(session, 9, "k", 1, EXPORTABLE, Ed25519PrivateKey.generate())
    narrow = put_wrap(session, delegated=CAPABILITY.EXPORTABLE_UNDER_WRAP)  # no sign-eddsa
    with pytest.raises(YubiHsmDeviceError) as e:
        narrow.export_wrapped(key)
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS


def test_export_needs_exportable_under_wrap_on_the_target(session: AuthSession) -> None:
    key = AsymmetricKey.put(
        session, 10, "k", 1, CAPABILITY.SIGN_EDDSA, Ed25519PrivateKey.generate()
    )
    with pytest.raises(YubiHsmDeviceError) as e:
        put_wrap(session, delegated=CAPABILITY.ALL).export_wrapped(key)
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS


def test_export_and_import_need_their_capability_on_the_wrap_key(session: AuthSession) -> None:
    key = AsymmetricKey.put(session, 11, "k", 1, EXPORTABLE, Ed25519PrivateKey.generate())
    import_only = put_wrap(session, caps=CAPABILITY.IMPORT_WRAPPED, key_id=0x40)
    with pytest.raises(YubiHsmDeviceError) as e:
        import_only.export_wrapped(key)
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS
    export_only = put_wrap(session, caps=CAPABILITY.EXPORT_WRAPPED, key_id=0x41)
    blob = export_only.export_wrapped(key)
    key.delete()
    with pytest.raises(YubiHsmDeviceError) as e:
        export_only.import_wrapped(blob)
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS


def test_missing_wrap_key_is_object_not_found(session: AuthSession) -> None:
    key = AsymmetricKey.put(session, 12, "k", 1, EXPORTABLE, Ed25519PrivateKey.generate())
    wrap = put_wrap(session)
    blob = wrap.export_wrapped(key)
    ghost = WrapKey(session, 0x99)
    for call in (lambda: ghost.export_wrapped(key), lambda: ghost.import_wrapped(blob)):
        with pytest.raises(YubiHsmDeviceError) as e:
            call()
        assert err_code(e) == ERROR.OBJECT_NOT_FOUND


def test_export_and_import_need_the_session_capabilities(session: AuthSession) -> None:
    key = AsymmetricKey.put(session, 13, "k", 1, EXPORTABLE, Ed25519PrivateKey.generate())
    wrap = put_wrap(session)
    blob = wrap.export_wrapped(key)
    AuthenticationKey.put_derived(
        session, 3, "signer", 0xFFFF, CAPABILITY.SIGN_EDDSA, CAPABILITY.NONE, "pw"
    )
    signer = connect_from(session).create_session_derived(3, "pw")
    with pytest.raises(YubiHsmDeviceError) as e:
        WrapKey(signer, wrap.id).export_wrapped(AsymmetricKey(signer, 13))
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS
    key.delete()
    with pytest.raises(YubiHsmDeviceError) as e:
        WrapKey(signer, wrap.id).import_wrapped(blob)
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS


def test_put_wrap_key_checks_the_key_length(session: AuthSession) -> None:
    # The library refuses a wrong length itself; send the frame by hand.
    msg = struct.pack(
        "!H40sHQBQ", 0x50, b"bad", 1, WRAP_CAPS, ALGORITHM.AES128_CCM_WRAP, 0
    ) + os.urandom(24)
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.PUT_WRAP_KEY, msg)
    assert err_code(e) == ERROR.INVALID_DATA


def test_generate_wrap_key_then_use_it(session: AuthSession) -> None:
    wrap = WrapKey.generate(
        session, 0x60, "gen", 1, WRAP_CAPS, ALGORITHM.AES128_CCM_WRAP, EXPORTABLE
    )
    assert wrap.get_info().origin == ORIGIN.GENERATED
    assert wrap.get_info().size == 8 + 16
    key = AsymmetricKey.put(session, 14, "k", 1, EXPORTABLE, Ed25519PrivateKey.generate())
    blob = wrap.export_wrapped(key)
    key.delete()
    back = wrap.import_wrapped(blob)
    assert isinstance(back, AsymmetricKey)
    back.sign_eddsa(b"ok")


def connect_from(session: AuthSession) -> YubiHsm:
    """The YubiHsm a session belongs to (to open a second session on the same device)."""
    hsm: YubiHsm = session._hsm
    return hsm
