"""Out-of-band provisioning of the simulated YubiHSM2: objects from operator-friendly inputs.

Owns: turning an Ed25519 seed, a password or an AES key into the `SimObject`
that `SimDevice.put_object` stores (labels packed, the password derived as the
library derives it, the wrap algorithm from the key length), and the factory
default authentication key. `Provisioning` is the part of `SimDevice`'s public
API that does this; storing (and its checks) stays `put_object`'s. Never
touches sessions, permissions, the audit log or I/O.
"""

from __future__ import annotations

from kms.sim.yubihsm import scp03
from kms.sim.yubihsm.defs import (
    DEFAULT_AUTH_KEY_ID,
    DEFAULT_AUTH_LABEL,
    DEFAULT_PASSWORD,
    WRAP_KEY_LENGTHS,
    Alg,
    Cap,
    ObjType,
)
from kms.sim.yubihsm.objects import SimObject, new_object, pack_label


def default_auth_key() -> SimObject:
    """Key 1, password "password", every capability and domain: what a new device holds."""
    k_enc, k_mac = scp03.password_to_key(DEFAULT_PASSWORD)
    return new_object(
        DEFAULT_AUTH_KEY_ID,
        ObjType.AUTHENTICATION_KEY,
        Alg.AES128_YUBICO_AUTHENTICATION,
        pack_label(DEFAULT_AUTH_LABEL),
        0xFFFF,
        Cap.ALL,
        k_enc + k_mac,
        delegated=Cap.ALL,
    )


class Provisioning:
    """`put_ed25519_seed`, `put_auth_key`, `put_wrap_key` on top of `put_object`."""

    def put_object(self, obj: SimObject) -> SimObject:
        raise NotImplementedError

    def put_ed25519_seed(
        self,
        key_id: int,
        seed: bytes,
        *,
        label: str = "validator",
        capabilities: int = Cap.SIGN_EDDSA,
        domains: int = 1,
    ) -> SimObject:
        """Store an Ed25519 key from its 32-byte RFC 8032 seed (origin: imported)."""
        return self.put_object(
            new_object(
                key_id,
                ObjType.ASYMMETRIC_KEY,
                Alg.EC_ED25519,
                pack_label(label),
                domains,
                capabilities,
                bytes(seed),
            )
        )

    def put_auth_key(
        self,
        key_id: int,
        password: str,
        *,
        label: str = "",
        capabilities: int = Cap.SIGN_EDDSA,
        delegated: int = 0,
        domains: int = 1,
    ) -> SimObject:
        """Store an authentication key derived from `password` (as the library derives it)."""
        k_enc, k_mac = scp03.password_to_key(password)
        return self.put_object(
            new_object(
                key_id,
                ObjType.AUTHENTICATION_KEY,
                Alg.AES128_YUBICO_AUTHENTICATION,
                pack_label(label),
                domains,
                capabilities,
                k_enc + k_mac,
                delegated=delegated,
            )
        )

    def put_wrap_key(
        self,
        key_id: int,
        key: bytes,
        *,
        label: str = "",
        capabilities: int = Cap.EXPORT_WRAPPED | Cap.IMPORT_WRAPPED,
        delegated: int = Cap.ALL,
        domains: int = 0xFFFF,
    ) -> SimObject:
        """Store an AES-CCM wrap key; the algorithm follows from len(key) (16/24/32)."""
        algorithm = {n: alg for alg, n in WRAP_KEY_LENGTHS.items()}.get(len(key))
        if algorithm is None:
            raise ValueError("a wrap key is 16, 24 or 32 bytes")
        return self.put_object(
            new_object(
                key_id,
                ObjType.WRAP_KEY,
                algorithm,
                pack_label(label),
                domains,
                capabilities,
                bytes(key),
                delegated=delegated,
            )
        )
