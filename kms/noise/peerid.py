"""libp2p identities: the `PublicKey` protobuf and peer IDs (NOISE.md §2.4, §3).

Owns: encoding/decoding libp2p's `PublicKey{Type, Data}` (Ed25519 only), the peer ID of
an Ed25519 key (base58btc of the identity multihash of that protobuf, "12D3KooW..."),
and parsing a pinned peer ID back to its key.

Rules:
- Only Ed25519 identities are accepted (kms's own key, and the node's: `cometbft init`
  writes Ed25519 node keys). Any other key type is refused by name.
- A peer ID is compared as the canonical string re-encoded from the key, so two
  spellings of one key cannot both pass or fail.
- `parse_peer_id` accepts exactly the 52-character base58btc identity form of an
  Ed25519 key; anything else (a 40-hex CometBFT node ID, a `Qm...` hash form, a CID) is
  a ValueError with a one-line reason.

Never touches: the handshake, sockets, key files.
"""

from __future__ import annotations

from kms.varint import decode_uvarint

__all__ = [
    "ED25519_KEY_PROTO_PREFIX",
    "decode_public_key",
    "ed25519_key_proto",
    "parse_peer_id",
    "peer_id_from_ed25519",
]

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
ED25519_KEY_PROTO_PREFIX = b"\x08\x01\x12\x20"  # Type = Ed25519 (1), Data = 32 bytes
_IDENTITY_MULTIHASH_PREFIX = b"\x00\x24"  # identity code, 36 bytes
_KEY_TYPES = {0: "RSA", 1: "Ed25519", 2: "Secp256k1", 3: "ECDSA"}
_MAX_PEER_ID_LEN = 128


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        if c not in _INDEX:
            raise ValueError(f"{c!r} is not a base58btc character")
        n = n * 58 + _INDEX[c]
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * zeros + body


def ed25519_key_proto(public_key: bytes) -> bytes:
    """libp2p's serialized PublicKey for an Ed25519 key (36 bytes)."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return ED25519_KEY_PROTO_PREFIX + public_key


def peer_id_from_ed25519(public_key: bytes) -> str:
    """The libp2p peer ID ("12D3KooW...") of an Ed25519 public key."""
    return b58encode(_IDENTITY_MULTIHASH_PREFIX + ed25519_key_proto(public_key))


def parse_peer_id(text: str) -> bytes:
    """A pinned peer ID -> the Ed25519 public key it names; ValueError when it is not one."""
    if not text or len(text) > _MAX_PEER_ID_LEN:
        raise ValueError("a libp2p peer ID is 52 base58 characters (12D3KooW...)")
    if len(text) == 40 and all(c in "0123456789abcdefABCDEF" for c in text):
        raise ValueError(
            "this is a 40-hex CometBFT node ID; noise:// needs the libp2p peer ID"
            " (cometbft show-node-id --libp2p)"
        )
    raw = b58decode(text)
    prefix = _IDENTITY_MULTIHASH_PREFIX + ED25519_KEY_PROTO_PREFIX
    if len(raw) != len(prefix) + 32 or not raw.startswith(prefix):
        raise ValueError("not the peer ID of an Ed25519 key (expected 12D3KooW..., 52 characters)")
    key = raw[len(prefix) :]
    if peer_id_from_ed25519(key) != text:
        raise ValueError("peer ID is not in canonical base58btc form")
    return key


def decode_public_key(data: bytes) -> bytes:
    """libp2p PublicKey protobuf -> the raw 32-byte Ed25519 key; ValueError otherwise."""
    key_type: int | None = None
    key: bytes | None = None
    pos = 0
    while pos < len(data):
        tag, pos = decode_uvarint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 1 and wire == 0 and key_type is None:
            key_type, pos = decode_uvarint(data, pos)
        elif number == 2 and wire == 2 and key is None:
            size, pos = decode_uvarint(data, pos)
            if size > len(data) - pos:
                raise ValueError("PublicKey.Data runs past the end")
            key, pos = data[pos : pos + size], pos + size
        else:
            raise ValueError(f"unexpected or repeated field {number} in PublicKey")
    if key_type is None or key is None:
        raise ValueError("PublicKey needs both Type and Data")
    if key_type != 1:
        name = _KEY_TYPES.get(key_type, f"type {key_type}")
        raise ValueError(f"identity key type {name} is not supported (only Ed25519)")
    if len(key) != 32:
        raise ValueError(f"Ed25519 identity key is {len(key)} bytes, expected 32")
    return key
