"""libp2p's Noise handshake payload (NOISE.md §2.4): identity key + signed static key.

Owns: building our `NoiseHandshakePayload{identity_key, identity_sig}` and checking the
peer's: decode, Ed25519 key, signature over "noise-libp2p-static-key:" || the peer's
Noise static key, peer ID of the re-encoded key.

Rules:
- Fields 1 (identity_key) and 2 (identity_sig) are required, at most once each;
  field 4 (extensions) and unknown fields are skipped (go-libp2p always sends an empty
  extensions message `22 00`); malformed wire data is refused.
- kms never sends extensions (the node stores but never uses them); the test node
  sends an empty one, as go-libp2p does.
- The payload is capped at MAX_PAYLOAD bytes before any parsing.

Never touches: the Noise state machine, sockets, key files.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kms.errors import HandshakeError
from kms.noise.peerid import decode_public_key, ed25519_key_proto, peer_id_from_ed25519
from kms.varint import decode_uvarint

__all__ = ["SIG_PREFIX", "PeerIdentity", "encode_payload", "verify_payload"]

SIG_PREFIX = b"noise-libp2p-static-key:"
MAX_PAYLOAD = 8192  # an Ed25519 payload is ~106 bytes; room for extensions, no more


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    public_key: bytes  # raw Ed25519
    peer_id: str


def encode_payload(
    identity: Ed25519PrivateKey, static_public: bytes, *, empty_extensions: bool = False
) -> bytes:
    """Our 104-byte payload: `0a 24 <PublicKey> 12 40 <sig>` (+ `22 00` with
    `empty_extensions`, the 106 bytes go-libp2p sends: used by the test node)."""
    pub = identity.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_proto = ed25519_key_proto(pub)
    sig = identity.sign(SIG_PREFIX + static_public)
    out = b"\x0a" + bytes((len(key_proto),)) + key_proto + b"\x12\x40" + sig
    return out + b"\x22\x00" if empty_extensions else out


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    try:
        return decode_uvarint(buf, pos)
    except ValueError as e:  # the peer's bytes: a handshake error of this layer
        raise HandshakeError(f"{e} in the Noise handshake payload") from None


def _fields(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _uvarint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise HandshakeError("field number 0 in the Noise handshake payload")
        if wire == 0:
            _, pos = _uvarint(data, pos)
            continue
        if wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(data):
                raise HandshakeError("truncated fixed-size field in the Noise handshake payload")
            continue
        if wire != 2:
            raise HandshakeError(f"unsupported wire type {wire} in the Noise handshake payload")
        size, pos = _uvarint(data, pos)
        if size > len(data) - pos:
            raise HandshakeError(f"field {number} of the Noise handshake payload runs past its end")
        if number in (1, 2):
            if number in out:
                raise HandshakeError(f"repeated field {number} in the Noise handshake payload")
            out[number] = data[pos : pos + size]
        pos += size
    return out


def verify_payload(payload: bytes, remote_static: bytes) -> PeerIdentity:
    """Check the peer's payload against its Noise static key; return who it is."""
    if len(payload) > MAX_PAYLOAD:
        raise HandshakeError(f"Noise handshake payload of {len(payload)} bytes is too long")
    fields = _fields(payload)
    if 1 not in fields:
        raise HandshakeError("Noise handshake payload has no identity key")
    if 2 not in fields:
        raise HandshakeError("Noise handshake payload has no identity signature")
    try:
        key = decode_public_key(fields[1])
    except ValueError as e:
        raise HandshakeError(f"peer identity: {e}") from None
    sig = fields[2]
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, SIG_PREFIX + remote_static)
    except (InvalidSignature, ValueError):
        raise HandshakeError("peer's signature over its Noise static key does not verify") from None
    return PeerIdentity(key, peer_id_from_ed25519(key))
