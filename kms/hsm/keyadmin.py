"""Key administration on one YubiHSM2 session: create, import, export under wrap, delete, list.

Owns: the write and listing primitives behind `kms keygen/import/export/keys
list` and `kms hsm status`, each one call on an authenticated session, and the
capability sets a validator key is created with. Never opens sessions (that is
kms/signer/yubihsm_session.py), never signs, never decides which devices or in
what order (the key flows do).
"""

from __future__ import annotations

from yubihsm.core import AuthSession
from yubihsm.defs import ALGORITHM, CAPABILITY, ERROR, OBJECT
from yubihsm.exceptions import YubiHsmDeviceError
from yubihsm.objects import AsymmetricKey, WrapKey

from kms.signer.yubihsm import KeyInfo, read_key

# A validator key that may never leave its device (--non-exportable); the usual one,
# exportable under wrap for replicas and backups, is kms.hsm.roles.VALIDATOR_KEY_CAPS.
SIGN_CAPS = CAPABILITY.SIGN_EDDSA


def list_asymmetric_keys(session: AuthSession) -> list[KeyInfo]:
    objs = session.list_objects(object_type=OBJECT.ASYMMETRIC_KEY)
    return [read_key(session, o.id) for o in objs]


def wrap_key_exists(session: AuthSession, wrap_key_id: int) -> bool:
    try:
        WrapKey(session, wrap_key_id).get_info()
    except YubiHsmDeviceError as e:
        if e.code == ERROR.OBJECT_NOT_FOUND:
            return False
        raise
    return True


def put_ed25519(
    session: AuthSession, key_id: int, label: str, domains: int, caps: int, seed: bytes
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    AsymmetricKey.put(
        session,
        key_id,
        label,
        domains,
        CAPABILITY(caps),
        Ed25519PrivateKey.from_private_bytes(seed),
    )


def generate_ed25519(
    session: AuthSession, key_id: int, label: str, domains: int, caps: int
) -> None:
    AsymmetricKey.generate(session, key_id, label, domains, CAPABILITY(caps), ALGORITHM.EC_ED25519)


def export_wrapped(session: AuthSession, wrap_key_id: int, key_id: int) -> bytes:
    return bytes(WrapKey(session, wrap_key_id).export_wrapped(AsymmetricKey(session, key_id)))


def import_wrapped(session: AuthSession, wrap_key_id: int, blob: bytes) -> tuple[int, int]:
    """Import a wrapped object; returns (object type, object id)."""
    obj = WrapKey(session, wrap_key_id).import_wrapped(blob)
    return int(obj.object_type), obj.id


def delete_key(session: AuthSession, key_id: int) -> None:
    AsymmetricKey(session, key_id).delete()
