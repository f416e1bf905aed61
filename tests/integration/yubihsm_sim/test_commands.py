"""Every simulated command through the unmodified `yubihsm` library over HTTP."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from yubihsm.core import AuthSession, YubiHsm
from yubihsm.defs import ALGORITHM, AUDIT, CAPABILITY, COMMAND, ERROR, OBJECT, ORIGIN
from yubihsm.exceptions import YubiHsmDeviceError
from yubihsm.objects import AsymmetricKey, AuthenticationKey, WrapKey, YhsmObject

from kms.sim.yubihsm import SimulatedHsm
from tests.yubihsm_typed import ed25519_public_key

from .conftest import connect

SIGN = CAPABILITY.SIGN_EDDSA
RFC8032 = [  # (seed, message, signature) RFC 8032 §7.1 tests 1-3
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


def err_code(exc: pytest.ExceptionInfo[YubiHsmDeviceError]) -> ERROR:
    return exc.value.code


def put_ed(
    session: AuthSession,
    key_id: int,
    key: Ed25519PrivateKey,
    *,
    label: str = "k",
    domains: int = 1,
    capabilities: CAPABILITY = SIGN,
) -> AsymmetricKey:
    return AsymmetricKey.put(session, key_id, label, domains, capabilities, key)


# --- Ed25519 ---------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "msg", "sig"), RFC8032)
def test_imported_keys_sign_the_rfc8032_vectors(
    session: AuthSession, seed: str, msg: str, sig: str
) -> None:
    key = put_ed(session, 10, Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed)))
    assert key.sign_eddsa(bytes.fromhex(msg)).hex() == sig


def test_signature_equals_software_ed25519_of_the_same_key(session: AuthSession) -> None:
    sk = Ed25519PrivateKey.generate()
    key = put_ed(session, 11, sk)
    for msg in (b"", b"vote", os.urandom(200), os.urandom(2019)):
        assert key.sign_eddsa(msg) == sk.sign(msg)
    pub = ed25519_public_key(key).public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert pub == sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_generated_key_signs_verifiably_and_reports_generated_origin(
    session: AuthSession,
) -> None:
    key = AsymmetricKey.generate(session, 12, "gen", 1, SIGN, ALGORITHM.EC_ED25519)
    msg = b"block 1"
    ed25519_public_key(key).verify(key.sign_eddsa(msg), msg)
    info = key.get_info()
    assert (info.origin, info.algorithm, info.size, info.sequence) == (
        ORIGIN.GENERATED,
        ALGORITHM.EC_ED25519,
        96,
        0,
    )


def test_id_zero_lets_the_device_choose_a_free_id(session: AuthSession) -> None:
    ids = {
        AsymmetricKey.generate(session, 0, "auto", 1, SIGN, ALGORITHM.EC_ED25519).id
        for _ in range(5)
    }
    assert len(ids) == 5 and all(1 <= i <= 0xFFFE for i in ids)


def test_unsupported_algorithm_is_invalid_data(session: AuthSession) -> None:
    with pytest.raises(YubiHsmDeviceError) as e:
        AsymmetricKey.generate(session, 13, "p256", 1, CAPABILITY.SIGN_ECDSA, ALGORITHM.EC_P256)
    assert err_code(e) == ERROR.INVALID_DATA


def test_duplicate_ids_are_object_exists_per_type(session: AuthSession) -> None:
    put_ed(session, 20, Ed25519PrivateKey.generate())
    with pytest.raises(YubiHsmDeviceError) as e:
        put_ed(session, 20, Ed25519PrivateKey.generate())
    assert err_code(e) == ERROR.OBJECT_EXISTS
    with pytest.raises(YubiHsmDeviceError) as e:
        AsymmetricKey.generate(session, 20, "dup", 1, SIGN, ALGORITHM.EC_ED25519)
    assert err_code(e) == ERROR.OBJECT_EXISTS
    # The same id is free for another type.
    WrapKey.put(
        session,
        20,
        "w",
        1,
        CAPABILITY.EXPORT_WRAPPED,
        ALGORITHM.AES128_CCM_WRAP,
        CAPABILITY.NONE,
        os.urandom(16),
    )


def test_missing_objects_are_object_not_found(session: AuthSession) -> None:
    missing = AsymmetricKey(session, 999)
    for call in (missing.get_info, missing.get_public_key, lambda: missing.sign_eddsa(b"m")):
        with pytest.raises(YubiHsmDeviceError) as e:
            call()
        assert err_code(e) == ERROR.OBJECT_NOT_FOUND
    with pytest.raises(YubiHsmDeviceError) as e:
        missing.delete()
    assert err_code(e) == ERROR.OBJECT_NOT_FOUND
    assert session.send_secure_cmd(COMMAND.ECHO, b"alive") == b"alive"


def test_sign_needs_sign_eddsa_on_the_key(session: AuthSession) -> None:
    key = put_ed(session, 21, Ed25519PrivateKey.generate(), capabilities=CAPABILITY.SIGN_ECDSA)
    with pytest.raises(YubiHsmDeviceError) as e:
        key.sign_eddsa(b"m")
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS


def test_sign_needs_sign_eddsa_on_the_session(hsm: YubiHsm, session: AuthSession) -> None:
    put_ed(session, 22, Ed25519PrivateKey.generate())
    AuthenticationKey.put_derived(
        session, 5, "no-sign", 1, CAPABILITY.GET_PSEUDO_RANDOM, CAPABILITY.NONE, "pw"
    )
    weak = hsm.create_session_derived(5, "pw")
    with pytest.raises(YubiHsmDeviceError) as e:
        AsymmetricKey(weak, 22).sign_eddsa(b"m")
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS
    assert len(weak.get_pseudo_random(4)) == 4  # the session survives the refusal


def test_objects_outside_the_session_domains_are_invisible(
    hsm: YubiHsm, session: AuthSession
) -> None:
    put_ed(session, 23, Ed25519PrivateKey.generate(), domains=0b10)  # domain 2
    put_ed(session, 24, Ed25519PrivateKey.generate(), domains=0b01)  # domain 1
    AuthenticationKey.put_derived(session, 6, "d1", 0b01, SIGN, CAPABILITY.NONE, "pw")
    d1 = hsm.create_session_derived(6, "pw")
    with pytest.raises(YubiHsmDeviceError) as e:
        AsymmetricKey(d1, 23).sign_eddsa(b"m")
    assert err_code(e) == ERROR.OBJECT_NOT_FOUND
    AsymmetricKey(d1, 24).sign_eddsa(b"m")
    listed = {(o.id, o.object_type) for o in d1.list_objects()}
    assert (24, OBJECT.ASYMMETRIC_KEY) in listed
    assert (23, OBJECT.ASYMMETRIC_KEY) not in listed


def test_new_objects_must_stay_within_the_delegated_capabilities(
    hsm: YubiHsm, session: AuthSession
) -> None:
    AuthenticationKey.put_derived(
        session,
        7,
        "operator",
        1,
        CAPABILITY.PUT_ASYMMETRIC | CAPABILITY.GENERATE_ASYMMETRIC_KEY,
        CAPABILITY.SIGN_EDDSA,
        "pw",
    )
    op = hsm.create_session_derived(7, "pw")
    put_ed(op, 30, Ed25519PrivateKey.generate())  # sign-eddsa only: delegated
    with pytest.raises(YubiHsmDeviceError) as e:
        put_ed(
            op,
            31,
            Ed25519PrivateKey.generate(),
            capabilities=SIGN | CAPABILITY.EXPORTABLE_UNDER_WRAP,
        )
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS
    with pytest.raises(YubiHsmDeviceError) as e:  # domain 2 is outside the session's domains
        AsymmetricKey.generate(op, 32, "d2", 0b10, SIGN, ALGORITHM.EC_ED25519)
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS
    with pytest.raises(YubiHsmDeviceError) as e:  # no put-authentication-key at all
        AuthenticationKey.put_derived(op, 8, "x", 1, SIGN, CAPABILITY.NONE, "pw")
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS


# --- list / info / delete -----------------------------------------------------------------


def test_list_objects_filters(session: AuthSession) -> None:
    put_ed(session, 40, Ed25519PrivateKey.generate(), label="alpha", domains=0b01)
    put_ed(
        session,
        41,
        Ed25519PrivateKey.generate(),
        label="beta",
        domains=0b10,
        capabilities=SIGN | CAPABILITY.EXPORTABLE_UNDER_WRAP,
    )
    WrapKey.put(
        session,
        40,
        "alpha",
        0b100,
        CAPABILITY.EXPORT_WRAPPED,
        ALGORITHM.AES256_CCM_WRAP,
        CAPABILITY.ALL,
        os.urandom(32),
    )

    def ids(found: Sequence[YhsmObject]) -> set[tuple[int, int]]:
        return {(o.id, o.object_type) for o in found}

    find = session.list_objects

    asym, wrap, auth = OBJECT.ASYMMETRIC_KEY, OBJECT.WRAP_KEY, OBJECT.AUTHENTICATION_KEY
    assert ids(find()) == {(1, auth), (40, asym), (41, asym), (40, wrap)}
    assert ids(find(object_id=40)) == {(40, asym), (40, wrap)}
    assert ids(find(object_type=asym)) == {(40, asym), (41, asym)}
    assert ids(find(domains=0b110)) == {(1, auth), (41, asym), (40, wrap)}  # any overlap
    assert ids(find(capabilities=CAPABILITY.EXPORTABLE_UNDER_WRAP)) == {(1, auth), (41, asym)}
    assert ids(find(algorithm=ALGORITHM.AES256_CCM_WRAP)) == {(40, wrap)}
    assert ids(find(label="alpha")) == {(40, asym), (40, wrap)}
    assert ids(find(label="alpha", object_type=asym)) == {(40, asym)}
    assert ids(find(label="nothing")) == set()


def test_object_info_reports_metadata(session: AuthSession) -> None:
    key = put_ed(session, 42, Ed25519PrivateKey.generate(), label="validator 🔑", domains=5)
    info = key.get_info()
    assert info.label == "validator 🔑"
    assert (info.id, info.domains, info.capabilities, info.delegated_capabilities) == (
        42,
        5,
        SIGN,
        0,
    )
    assert info.origin == ORIGIN.IMPORTED and info.size == 96


def test_delete_needs_only_the_session_capability_and_bumps_the_sequence(
    hsm: YubiHsm, session: AuthSession
) -> None:
    key = put_ed(session, 43, Ed25519PrivateKey.generate())
    AuthenticationKey.put_derived(session, 9, "no-delete", 1, SIGN, CAPABILITY.NONE, "pw")
    weak = hsm.create_session_derived(9, "pw")
    with pytest.raises(YubiHsmDeviceError) as e:
        AsymmetricKey(weak, 43).delete()
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS
    key.delete()
    with pytest.raises(YubiHsmDeviceError) as e:
        key.get_info()
    assert err_code(e) == ERROR.OBJECT_NOT_FOUND
    again = put_ed(session, 43, Ed25519PrivateKey.generate())
    assert again.get_info().sequence == 1
    assert [o._seq for o in session.list_objects(object_id=43)] == [1]


# --- misc commands ----------------------------------------------------------------------


def test_pseudo_random_returns_the_requested_length(session: AuthSession) -> None:
    a, b = session.get_pseudo_random(32), session.get_pseudo_random(32)
    assert len(a) == 32 and a != b


def test_reset_restores_factory_state_and_ends_sessions(
    sim: SimulatedHsm, session: AuthSession
) -> None:
    put_ed(session, 50, Ed25519PrivateKey.generate())
    AuthenticationKey.put_derived(session, 2, "x", 1, SIGN, CAPABILITY.NONE, "pw")
    session.reset_device()
    assert sim.device.active_sessions() == []
    hsm = connect(sim)
    fresh = hsm.create_session_derived(1, "password")
    assert [(o.id, o.object_type) for o in fresh.list_objects()] == [(1, OBJECT.AUTHENTICATION_KEY)]
    logs = fresh.get_log_entries()
    assert [e.number for e in logs.entries] == [1, 2]


def test_command_audit_logs_signatures_in_a_verifiable_chain(session: AuthSession) -> None:
    key = put_ed(session, 51, Ed25519PrivateKey.generate())
    assert session.get_command_audit()[COMMAND.SIGN_EDDSA] == AUDIT.OFF  # fw >= 2.3.1 default
    key.sign_eddsa(b"h=0")  # not logged
    last = session.get_log_entries().entries[-1]
    session.set_log_index(last.number)
    session.set_command_audit({COMMAND.SIGN_EDDSA: AUDIT.ON})
    key.sign_eddsa(b"h=1")
    key.sign_eddsa(b"h=2")
    data = session.get_log_entries(previous_entry=last)  # the library checks every digest
    assert [e.command for e in data.entries] == [COMMAND.SIGN_EDDSA] * 2
    assert [e.number for e in data.entries] == [last.number + 1, last.number + 2]
    assert all(e.target_key == 51 and e.session_key == 1 for e in data.entries)
    assert all(e.result == COMMAND.SIGN_EDDSA | 0x80 for e in data.entries)
    assert all(e.length == 2 + 3 for e in data.entries)


def test_a_forged_previous_entry_fails_the_library_chain_check(session: AuthSession) -> None:
    from dataclasses import replace

    from yubihsm.exceptions import YubiHsmInvalidResponseError

    session.set_command_audit({COMMAND.GET_PSEUDO_RANDOM: AUDIT.ON})
    last = session.get_log_entries().entries[-1]
    session.set_log_index(last.number)
    session.get_pseudo_random(1)
    with pytest.raises(YubiHsmInvalidResponseError):
        session.get_log_entries(replace(last, digest=os.urandom(16)))


def test_audit_settings_accept_every_library_command_but_the_fixed_five(
    session: AuthSession,
) -> None:
    skip = {
        COMMAND.ERROR,
        COMMAND.DEVICE_INFO,
        COMMAND.GET_LOG_ENTRIES,
        COMMAND.ECHO,
        COMMAND.SESSION_MESSAGE,
    }
    session.set_command_audit({c: AUDIT.ON for c in COMMAND if c not in skip})
    settings = session.get_command_audit()
    assert set(settings) == set(COMMAND) - skip
    assert all(v == AUDIT.ON for v in settings.values())
    with pytest.raises(YubiHsmDeviceError) as e:
        session.set_command_audit({COMMAND.ECHO: AUDIT.ON})
    assert err_code(e) == ERROR.INVALID_DATA


def test_forced_audit_refuses_audited_commands_when_the_log_is_full(
    hsm: YubiHsm, session: AuthSession
) -> None:
    key = put_ed(session, 52, Ed25519PrivateKey.generate())
    session.set_command_audit({COMMAND.SIGN_EDDSA: AUDIT.ON})
    last = session.get_log_entries().entries[-1]
    session.set_log_index(last.number)
    session.set_force_audit(AUDIT.ON)
    assert session.get_force_audit() == AUDIT.ON
    for i in range(62):
        key.sign_eddsa(b"%d" % i)
    with pytest.raises(YubiHsmDeviceError) as e:
        key.sign_eddsa(b"one too many")
    assert err_code(e) == ERROR.LOG_FULL
    info = hsm.get_device_info()
    assert info.log_used == info.log_size == 62
    entries = session.get_log_entries(last).entries  # still readable, chain intact
    session.set_log_index(entries[-1].number)
    key.sign_eddsa(b"room again")
    session.set_force_audit(AUDIT.OFF)
    for i in range(70):  # without force-audit the oldest entries are overwritten
        key.sign_eddsa(b"x%d" % i)
    assert hsm.get_device_info().log_used == 62


def test_sim_records_what_was_signed(sim: SimulatedHsm, session: AuthSession) -> None:
    key = put_ed(session, 53, Ed25519PrivateKey.generate())
    key.sign_eddsa(b"height 7")
    assert sim.device.signed == [(53, hashlib.sha256(b"height 7").digest())]


def test_unknown_session_command_is_invalid_command(session: AuthSession) -> None:
    with pytest.raises(YubiHsmDeviceError) as e:
        session.send_secure_cmd(COMMAND.SIGN_PKCS1, b"\x00\x01abc")
    assert err_code(e) == ERROR.INVALID_COMMAND
    assert session.send_secure_cmd(COMMAND.ECHO, b"ok") == b"ok"


def test_opaque_objects_put_get_and_need_the_session_capabilities(
    hsm: YubiHsm, session: AuthSession
) -> None:
    from yubihsm.objects import Opaque

    data = os.urandom(1968)
    obj = Opaque.put(session, 0, "blob", 1, CAPABILITY.NONE, ALGORITHM.OPAQUE_DATA, data)
    assert obj.get() == data
    assert obj.get_info().size == len(data)
    AuthenticationKey.put_derived(session, 12, "reader-less", 1, SIGN, CAPABILITY.NONE, "pw")
    weak = hsm.create_session_derived(12, "pw")
    with pytest.raises(YubiHsmDeviceError) as e:
        Opaque(weak, obj.id).get()
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS
    with pytest.raises(YubiHsmDeviceError) as e:
        Opaque.put(weak, 0, "x", 1, CAPABILITY.NONE, ALGORITHM.OPAQUE_DATA, b"x")
    assert err_code(e) == ERROR.INSUFFICIENT_PERMISSIONS
