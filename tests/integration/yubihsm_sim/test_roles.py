"""Auth-key life cycle, least-privilege roles and the audit-log index, through the unmodified library.

What `kms hsm setup` relies on: auth keys created with PUT_AUTHENTICATION_KEY
log in with exactly their capabilities and domains, the factory auth key can be
deleted (and comes back only with a reset), a signer-only role is refused
everything but sign-eddsa on keys in its domain, and SET_LOG_INDEX frees the
read entries.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from yubihsm.core import AuthSession, YubiHsm
from yubihsm.defs import ALGORITHM, AUDIT, CAPABILITY, COMMAND, ERROR, OBJECT
from yubihsm.exceptions import YubiHsmDeviceError
from yubihsm.objects import AsymmetricKey, AuthenticationKey, WrapKey

SIGN = CAPABILITY.SIGN_EDDSA
EXPORTABLE = SIGN | CAPABILITY.EXPORTABLE_UNDER_WRAP


def refused(code: ERROR, fn: Callable[..., object], *args: object) -> None:
    with pytest.raises(YubiHsmDeviceError) as e:
        fn(*args)
    assert e.value.code == code


def test_a_new_auth_key_logs_in_and_is_gone_after_delete(
    hsm: YubiHsm, session: AuthSession
) -> None:
    key = AuthenticationKey.put_derived(
        session, 0x10, "auditor", 0xFFFF, CAPABILITY.GET_LOG_ENTRIES, CAPABILITY.NONE, "pw-a"
    )
    info = key.get_info()
    assert (info.capabilities, info.delegated_capabilities, info.domains) == (
        CAPABILITY.GET_LOG_ENTRIES,
        CAPABILITY.NONE,
        0xFFFF,
    )
    auditor = hsm.create_session_derived(0x10, "pw-a")
    assert auditor.get_log_entries().entries  # its one capability works
    refused(ERROR.INSUFFICIENT_PERMISSIONS, auditor.get_pseudo_random, 4)
    auditor.close()
    key.delete()
    refused(ERROR.OBJECT_NOT_FOUND, hsm.create_session_derived, 0x10, "pw-a")


def test_deleting_the_factory_auth_key_needs_the_capability_and_lasts_until_reset(
    hsm: YubiHsm, session: AuthSession
) -> None:
    AuthenticationKey.put_derived(
        session, 2, "admin", 0xFFFF, CAPABILITY.ALL, CAPABILITY.ALL, "admin-pw"
    )
    AuthenticationKey.put_derived(
        session, 3, "weak", 0xFFFF, CAPABILITY.GET_PSEUDO_RANDOM, CAPABILITY.NONE, "weak-pw"
    )
    weak = hsm.create_session_derived(3, "weak-pw")
    refused(ERROR.INSUFFICIENT_PERMISSIONS, AuthenticationKey(weak, 1).delete)
    admin = hsm.create_session_derived(2, "admin-pw")
    AuthenticationKey(admin, 1).delete()
    refused(ERROR.OBJECT_NOT_FOUND, hsm.create_session_derived, 1, "password")
    assert 1 not in {o.id for o in admin.list_objects(object_type=OBJECT.AUTHENTICATION_KEY)}
    admin.reset_device()
    hsm.close()


def test_the_signer_role_can_only_sign_with_keys_in_its_domain(
    hsm: YubiHsm, session: AuthSession
) -> None:
    WrapKey.put(
        session,
        1,
        "wrap",
        0xFFFF,
        CAPABILITY.EXPORT_WRAPPED | CAPABILITY.IMPORT_WRAPPED,
        ALGORITHM.AES256_CCM_WRAP,
        CAPABILITY.ALL,
        b"\x07" * 32,
    )
    AsymmetricKey.put(session, 10, "validator", 0b01, EXPORTABLE, Ed25519PrivateKey.generate())
    AsymmetricKey.put(session, 11, "other", 0b10, EXPORTABLE, Ed25519PrivateKey.generate())
    AuthenticationKey.put_derived(session, 4, "signer", 0b01, SIGN, CAPABILITY.NONE, "s-pw")
    signer = hsm.create_session_derived(4, "s-pw")
    AsymmetricKey(signer, 10).sign_eddsa(b"vote")  # its one job
    refused(ERROR.OBJECT_NOT_FOUND, AsymmetricKey(signer, 11).sign_eddsa, b"vote")
    refused(
        ERROR.INSUFFICIENT_PERMISSIONS, WrapKey(signer, 1).export_wrapped, AsymmetricKey(signer, 10)
    )
    refused(ERROR.INSUFFICIENT_PERMISSIONS, AsymmetricKey(signer, 10).delete)
    refused(
        ERROR.INSUFFICIENT_PERMISSIONS,
        AsymmetricKey.generate,
        signer,
        12,
        "x",
        1,
        SIGN,
        ALGORITHM.EC_ED25519,
    )
    refused(
        ERROR.INSUFFICIENT_PERMISSIONS,
        AuthenticationKey.put_derived,
        signer,
        5,
        "x",
        1,
        SIGN,
        CAPABILITY.NONE,
        "pw",
    )
    refused(ERROR.INSUFFICIENT_PERMISSIONS, signer.get_log_entries)
    refused(ERROR.INSUFFICIENT_PERMISSIONS, signer.reset_device)
    AsymmetricKey(signer, 10).sign_eddsa(b"still signing")  # refusals keep the session


def test_set_log_index_frees_the_read_entries(hsm: YubiHsm, session: AuthSession) -> None:
    session.set_command_audit({COMMAND.SIGN_EDDSA: AUDIT.ON})
    key = AsymmetricKey.put(session, 20, "k", 1, SIGN, Ed25519PrivateKey.generate())
    key.sign_eddsa(b"one")
    first = session.get_log_entries()
    last = first.entries[-1]
    assert last.command == COMMAND.SIGN_EDDSA and last.target_key == 20
    session.set_log_index(last.number)
    key.sign_eddsa(b"two")
    second = session.get_log_entries(previous_entry=last)  # the chain continues across the index
    assert [e.number for e in second.entries] == [last.number + 1]
    refused(ERROR.INVALID_DATA, session.set_log_index, last.number)  # already freed


def test_forced_audit_with_a_full_log_still_lets_the_auditor_read_and_free_it(
    hsm: YubiHsm, session: AuthSession
) -> None:
    session.set_command_audit({COMMAND.GET_PSEUDO_RANDOM: AUDIT.ON})
    session.set_force_audit(AUDIT.ON)
    AuthenticationKey.put_derived(
        session, 0x10, "auditor", 0xFFFF, CAPABILITY.GET_LOG_ENTRIES, CAPABILITY.NONE, "pw-a"
    )
    with pytest.raises(YubiHsmDeviceError) as e:
        for _ in range(100):
            session.get_pseudo_random(1)
    assert e.value.code == ERROR.LOG_FULL
    auditor = hsm.create_session_derived(0x10, "pw-a")
    log = auditor.get_log_entries()
    auditor.set_log_index(log.entries[-1].number)
    session.get_pseudo_random(1)  # room again


def test_import_wrapped_stays_within_the_session_domains(
    hsm: YubiHsm, session: AuthSession
) -> None:
    wrap = WrapKey.put(
        session, 1, "wrap", 0xFFFF, CAPABILITY.EXPORT_WRAPPED | CAPABILITY.IMPORT_WRAPPED,
        ALGORITHM.AES256_CCM_WRAP, CAPABILITY.ALL, b"\x07" * 32,
    )  # fmt: skip
    d1 = AsymmetricKey.put(session, 30, "d1", 0b01, EXPORTABLE, Ed25519PrivateKey.generate())
    d2 = AsymmetricKey.put(session, 31, "d2", 0b10, EXPORTABLE, Ed25519PrivateKey.generate())
    blobs = [wrap.export_wrapped(d1), wrap.export_wrapped(d2)]
    d1.delete()
    d2.delete()
    AuthenticationKey.put_derived(
        session, 3, "operator", 0b01, CAPABILITY.IMPORT_WRAPPED, EXPORTABLE, "op-pw"
    )
    op = hsm.create_session_derived(3, "op-pw")
    assert WrapKey(op, 1).import_wrapped(blobs[0]).id == 30
    refused(ERROR.INSUFFICIENT_PERMISSIONS, WrapKey(op, 1).import_wrapped, blobs[1])
    assert WrapKey(session, 1).import_wrapped(blobs[1]).id == 31  # all domains: allowed
