"""Objects stored in the simulated YubiHSM2, their wire encodings and the wrap codec.

Owns: the `SimObject` value (one (id, type) slot: metadata plus secret), its
GET_OBJECT_INFO encoding and reported size, the secret's public key and
signing, the wrap body of each type and the AES-CCM wrap blob (YUBIHSM.md
§4.13: nonce(13) || AES-CCM(59-byte header || body) with a 16-byte tag, no
associated data), and the JSON form used by the state file. Never touches
sessions, permissions, clocks or I/O; randomness (the nonce) is passed in.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from kms.errors import SimObjectFormatError, SimWrapAuthError
from kms.sim.yubihsm import ed25519
from kms.sim.yubihsm.defs import LABEL_LENGTH, WRAP_KEY_LENGTHS, Alg, ObjType, Origin

INFO_FORMAT = f"!QHHHBBBB{LABEL_LENGTH}sQ"
WRAP_HEADER_FORMAT = f"!BQHHHBBBB{LABEL_LENGTH}s"
WRAP_HEADER_LEN = struct.calcsize(WRAP_HEADER_FORMAT)  # 59
WRAP_NONCE_LEN = 13
WRAP_TAG_LEN = 16

# Wrap formats for EXPORT_WRAPPED's optional last byte.
WRAP_FORMAT_LEGACY = 0
WRAP_FORMAT_WITH_SEED = 1  # simulator-only body: expanded(96) || seed(32), see module docstring


def pack_label(label: str | bytes) -> bytes:
    raw = label.encode("utf-8") if isinstance(label, str) else label
    if len(raw) > LABEL_LENGTH:
        raise SimObjectFormatError(f"label longer than {LABEL_LENGTH} bytes")
    return raw.ljust(LABEL_LENGTH, b"\0")


@dataclass(frozen=True, slots=True)
class SimObject:
    """One object. `secret` depends on the type:

    - authentication key: K-ENC(16) || K-MAC(16)
    - Ed25519 asymmetric key: the 32-byte seed, or the 96-byte expanded key when it
      arrived in a legacy wrap blob (no seed known)
    - wrap key: the AES key (16, 24 or 32 bytes)
    - opaque: the data (1 byte or more)
    """

    id: int
    type: int
    algorithm: int
    label: bytes  # 40 bytes, zero padded
    domains: int
    capabilities: int
    delegated: int
    origin: int
    sequence: int
    secret: bytes

    @property
    def handle(self) -> tuple[int, int]:
        return (self.id, self.type)

    @property
    def has_delegated(self) -> bool:
        return self.type in (ObjType.AUTHENTICATION_KEY, ObjType.WRAP_KEY)

    @property
    def size(self) -> int:
        """The "length" reported by GET_OBJECT_INFO: size of the internal representation."""
        return len(wrap_body(self, WRAP_FORMAT_LEGACY))

    def info_bytes(self) -> bytes:
        return struct.pack(
            INFO_FORMAT,
            self.capabilities,
            self.id,
            self.size,
            self.domains,
            self.type,
            self.algorithm,
            self.sequence,
            self.origin,
            self.label,
            self.delegated if self.has_delegated else 0,
        )

    # --- Ed25519 -------------------------------------------------------------------

    @property
    def is_ed25519(self) -> bool:
        return self.type == ObjType.ASYMMETRIC_KEY and self.algorithm == Alg.EC_ED25519

    @property
    def expanded(self) -> bytes:
        return self.secret if len(self.secret) == 96 else ed25519.expand_seed(self.secret)

    def public_key(self) -> bytes:
        if len(self.secret) == 96:
            return self.secret[64:]
        return ed25519.public_from_seed(self.secret)

    def sign_eddsa(self, message: bytes) -> bytes:
        if len(self.secret) == 96:
            return ed25519.sign_expanded(self.secret, message)
        return ed25519.sign_seed(self.secret, message)

    # --- JSON ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        secret: dict[str, str]
        if self.type == ObjType.AUTHENTICATION_KEY:
            secret = {"enc": self.secret[:16].hex(), "mac": self.secret[16:].hex()}
        elif self.is_ed25519 and len(self.secret) == 32:
            secret = {"ed25519_seed": self.secret.hex()}
        elif self.is_ed25519:
            secret = {"ed25519_expanded": self.secret.hex()}
        elif self.type == ObjType.OPAQUE:
            secret = {"data": self.secret.hex()}
        else:
            secret = {"key": self.secret.hex()}
        return {
            "id": self.id,
            "type": self.type,
            "algorithm": self.algorithm,
            "label": self.label.rstrip(b"\0").decode("utf-8", "surrogateescape"),
            "domains": self.domains,
            "capabilities": f"{self.capabilities:016x}",
            "delegated": f"{self.delegated:016x}",
            "origin": self.origin,
            "sequence": self.sequence,
            "secret": secret,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SimObject:
        try:
            s = d["secret"]
            if "enc" in s:
                secret = bytes.fromhex(s["enc"]) + bytes.fromhex(s["mac"])
            else:
                secret = bytes.fromhex(
                    s.get("ed25519_seed") or s.get("ed25519_expanded") or s.get("data") or s["key"]
                )
            obj = cls(
                id=int(d["id"]),
                type=int(d["type"]),
                algorithm=int(d["algorithm"]),
                label=pack_label(str(d["label"]).encode("utf-8", "surrogateescape")),
                domains=int(d["domains"]),
                capabilities=int(d["capabilities"], 16),
                delegated=int(d["delegated"], 16),
                origin=int(d["origin"]),
                sequence=int(d["sequence"]),
                secret=secret,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SimObjectFormatError(f"bad object entry {d!r}: {e}") from e
        validate_secret(obj.type, obj.algorithm, obj.secret)
        return obj


def new_object(
    obj_id: int,
    obj_type: int,
    algorithm: int,
    label: bytes,
    domains: int,
    capabilities: int,
    secret: bytes,
    *,
    delegated: int = 0,
    origin: int = Origin.IMPORTED,
) -> SimObject:
    """A new object as a command or provisioning creates it (sequence set when stored)."""
    return SimObject(
        obj_id, obj_type, algorithm, label, domains, capabilities, delegated, origin, 0, secret
    )


def validate_secret(obj_type: int, algorithm: int, secret: bytes) -> None:
    """Raise SimObjectFormatError unless `secret` fits the (type, algorithm)."""
    checks: dict[int, Callable[[], bool]] = {
        ObjType.AUTHENTICATION_KEY: lambda: (
            algorithm == Alg.AES128_YUBICO_AUTHENTICATION and len(secret) == 32
        ),
        ObjType.ASYMMETRIC_KEY: lambda: (
            algorithm == Alg.EC_ED25519
            and (len(secret) == 32 or ed25519.expanded_is_consistent(secret))
        ),
        ObjType.WRAP_KEY: lambda: WRAP_KEY_LENGTHS.get(algorithm) == len(secret),
        ObjType.OPAQUE: lambda: (
            algorithm in (Alg.OPAQUE_DATA, Alg.OPAQUE_X509_CERTIFICATE) and len(secret) > 0
        ),
    }
    check = checks.get(obj_type)
    ok = check is not None and check()
    if not ok:
        raise SimObjectFormatError(
            f"unsupported or malformed object (type {obj_type}, alg {algorithm})"
        )


# --- wrap bodies and blobs -----------------------------------------------------------


def wrap_body(obj: SimObject, fmt: int) -> bytes:
    """The plaintext body after the 59-byte header (YUBIHSM.md §4.13)."""
    if obj.type in (ObjType.AUTHENTICATION_KEY, ObjType.WRAP_KEY):
        return struct.pack("!Q", obj.delegated) + obj.secret
    if obj.type == ObjType.OPAQUE:
        return obj.secret
    if obj.is_ed25519:
        if fmt == WRAP_FORMAT_WITH_SEED and len(obj.secret) == 32:
            return obj.expanded + obj.secret
        return obj.expanded
    raise SimObjectFormatError(f"no wrap body for type {obj.type}")


def _secret_from_body(obj_type: int, algorithm: int, body: bytes) -> tuple[bytes, int]:
    """(secret, delegated) from a wrap body; SimObjectFormatError when malformed."""
    if obj_type in (ObjType.AUTHENTICATION_KEY, ObjType.WRAP_KEY):
        if len(body) < 8:
            raise SimObjectFormatError("short body")
        (delegated,) = struct.unpack("!Q", body[:8])
        return body[8:], delegated
    if obj_type == ObjType.OPAQUE:
        return body, 0
    if obj_type == ObjType.ASYMMETRIC_KEY and algorithm == Alg.EC_ED25519:
        if len(body) == 128:
            seed = body[96:]
            if ed25519.expand_seed(seed) != body[:96]:
                raise SimObjectFormatError("seed does not match the expanded key")
            return seed, 0
        return body, 0
    raise SimObjectFormatError(f"cannot import type {obj_type} algorithm {algorithm}")


def wrap_object(wrap_key: SimObject, obj: SimObject, fmt: int, nonce: bytes) -> bytes:
    body = wrap_body(obj, fmt)
    header = struct.pack(
        WRAP_HEADER_FORMAT,
        wrap_key.algorithm,
        obj.capabilities,
        obj.id,
        len(body),
        obj.domains,
        obj.type,
        obj.algorithm,
        obj.sequence,
        obj.origin,
        obj.label,
    )
    ct = AESCCM(wrap_key.secret, tag_length=WRAP_TAG_LEN).encrypt(nonce, header + body, None)
    return nonce + ct


def unwrap_object(wrap_key: SimObject, blob: bytes) -> SimObject:
    """Decrypt and parse a wrap blob. The returned object still carries the header's
    origin and sequence; the device decides the final ones."""
    if len(blob) < WRAP_NONCE_LEN + WRAP_HEADER_LEN + WRAP_TAG_LEN:
        raise SimObjectFormatError("wrap blob too short")
    nonce, ct = blob[:WRAP_NONCE_LEN], blob[WRAP_NONCE_LEN:]
    try:
        plain = AESCCM(wrap_key.secret, tag_length=WRAP_TAG_LEN).decrypt(nonce, ct, None)
    except InvalidTag as e:
        raise SimWrapAuthError("wrap blob failed authentication") from e
    (wrap_alg, caps, obj_id, body_len, domains, obj_type, alg, seq, origin, label) = struct.unpack(
        WRAP_HEADER_FORMAT, plain[:WRAP_HEADER_LEN]
    )
    body = plain[WRAP_HEADER_LEN:]
    if wrap_alg != wrap_key.algorithm or body_len != len(body):
        raise SimObjectFormatError("wrap header inconsistent with its body or key")
    secret, delegated = _secret_from_body(obj_type, alg, body)
    validate_secret(obj_type, alg, secret)
    return SimObject(
        id=obj_id,
        type=obj_type,
        algorithm=alg,
        label=label,
        domains=domains,
        capabilities=caps,
        delegated=delegated,
        origin=origin,
        sequence=seq,
        secret=secret,
    )
