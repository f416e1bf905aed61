"""Typed front for the few `yubihsm` library calls that ship without annotations.

Owns only the narrowing of the library's untyped results to the types the tests rely on; it never
talks to a device by itself (callers pass a key bound to their own session).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from yubihsm.objects import AsymmetricKey, YhsmObject


def ed25519_public_key(key: YhsmObject) -> Ed25519PublicKey:
    """GET_PUBLIC_KEY through the library, checked to be the Ed25519 key a validator uses."""
    assert isinstance(key, AsymmetricKey), key
    # yubihsm 3.1 leaves AsymmetricKey.get_public_key unannotated (it returns one of several types)
    pub = key.get_public_key()  # type: ignore[no-untyped-call]
    assert isinstance(pub, Ed25519PublicKey), pub
    return pub
