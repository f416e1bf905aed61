"""The SecretConnection handshake as a sans-IO state machine (PRIVVAL.md §1.1-§1.3, §1.6).

Owns: the ephemeral key message, the X25519 exchange and its checks, the key schedule
call, the AuthSigMessage (encode, strict decode, signature check), the optional peer-ID
pin, and the peer ID rule itself (`peer_id`).

Use (h11 style, the same for dialer and listener: "write then read"):

    hs = Handshake(identity_seed)
    send(hs.data_to_send())                # our 35-byte ephemeral message
    while not hs.done:
        hs.receive_data(recv())            # any chunking, down to one byte at a time
        send(hs.data_to_send())            # our sealed AuthSig, once the DH is done
    result = hs.result()                   # remote key, peer ID, SecretStream, surplus

Rules:
- The peer's first message must be exactly `22 0a 20` + 32 bytes; a wrong prefix byte is
  rejected as soon as it arrives.
- A remote ephemeral key that yields an all-zero X25519 output (every low-order point,
  with or without bit 255) is rejected; the zero check uses a constant-time compare.
  A peer echoing our own ephemeral key back is rejected too.
- The peer's AuthSigMessage must carry an Ed25519 key of exactly 32 bytes and a 64-byte
  signature that verifies over the Merlin challenge; any other key type, a missing
  field, an unknown or repeated field, or a field running past the message is rejected.
- With `expected_peer_id`, the authenticated key's peer ID must match (hmac.compare_digest).
- Any failure is final: the machine moves to FAILED and every later call raises.
- Only HandshakeError and FrameError leave this module for any peer input.

Time and randomness: no clock here; the ephemeral secret comes from `random_bytes`
(default os.urandom) unless injected.
Never touches: sockets, asyncio, the filesystem, logging of secrets.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kms.errors import HandshakeError
from kms.secretconn.kdf import derive_secrets, merlin_challenge, sort_ephemeral_keys
from kms.secretconn.stream import SecretStream

__all__ = [
    "EPHEMERAL_MESSAGE_PREFIX",
    "Handshake",
    "HandshakeResult",
    "HandshakeState",
    "encode_auth_sig",
    "encode_ephemeral_message",
    "peer_id",
]

KEY_SIZE = 32
SIGNATURE_SIZE = 64
EPHEMERAL_MESSAGE_PREFIX = b"\x22\x0a\x20"  # uvarint 34, BytesValue.value (field 1, LEN), 32
_EPHEMERAL_MESSAGE_SIZE = len(EPHEMERAL_MESSAGE_PREFIX) + KEY_SIZE  # 35
_ZERO_KEY = bytes(KEY_SIZE)
# A real AuthSigMessage body is 102 bytes for Ed25519; a little headroom lets us name
# other key types in the error instead of only saying "too long".
MAX_AUTH_SIG_BODY = 8192
_PEER_ID_HEX_LEN = 40

# PublicKey oneof field numbers (tendermint.crypto / cometbft.crypto.v1).
_PUBKEY_TYPES: dict[int, str] = {
    1: "ed25519",
    2: "secp256k1",
    3: "bls12_381",
    4: "mldsa65",
    5: "secp256k1eth",
}
_WIRE_LEN = 2  # the only protobuf wire type AuthSigMessage and PublicKey use


class HandshakeState(enum.Enum):
    AWAIT_EPHEMERAL = "await-ephemeral"
    AWAIT_AUTH_SIG = "await-auth-sig"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What an authenticated handshake yields."""

    remote_public_key: bytes
    remote_peer_id: str
    stream: SecretStream  # ciphers positioned after the AuthSig frames (nonce 1 each way)
    initial_plaintext: bytes  # payload the peer sent after its AuthSig, already decrypted


def peer_id(pubkey: bytes) -> str:
    """CometBFT node ID: lower-case hex of the first 20 bytes of SHA-256(ed25519 pubkey)."""
    if len(pubkey) != KEY_SIZE:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(pubkey).digest()[:20].hex()


def encode_ephemeral_message(ephemeral_public: bytes) -> bytes:
    """The 35-byte plaintext first message: uvarint-prefixed BytesValue(pubkey)."""
    if len(ephemeral_public) != KEY_SIZE:
        raise ValueError("an X25519 public key is 32 bytes")
    return EPHEMERAL_MESSAGE_PREFIX + ephemeral_public


def encode_auth_sig(identity_public: bytes, signature: bytes) -> bytes:
    """The 103-byte uvarint-prefixed AuthSigMessage{pub_key{ed25519}, sig}."""
    if len(identity_public) != KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        raise ValueError("AuthSig needs a 32-byte Ed25519 key and a 64-byte signature")
    body = b"\x0a\x22\x0a\x20" + identity_public + b"\x12\x40" + signature
    return bytes((len(body),)) + body


def _normalise_peer_id(expected: str | None) -> str | None:
    if expected is None:
        return None
    lowered = expected.lower()
    if len(lowered) != _PEER_ID_HEX_LEN or any(c not in "0123456789abcdef" for c in lowered):
        raise ValueError("expected_peer_id must be 40 hex characters (a CometBFT node ID)")
    return lowered


class Handshake:
    """One side of a SecretConnection handshake; identical for dialer and listener."""

    def __init__(
        self,
        identity_seed: bytes,
        *,
        ephemeral_secret: bytes | None = None,
        expected_peer_id: str | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(identity_seed) != KEY_SIZE:
            raise ValueError("the identity seed must be 32 bytes (Ed25519 private seed)")
        secret = random_bytes(KEY_SIZE) if ephemeral_secret is None else ephemeral_secret
        if len(secret) != KEY_SIZE:
            raise ValueError("the ephemeral X25519 secret must be 32 bytes")
        self._identity = Ed25519PrivateKey.from_private_bytes(identity_seed)
        self.local_public_key = self._identity.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        )
        self._ephemeral = X25519PrivateKey.from_private_bytes(secret)
        self.local_ephemeral_public = self._ephemeral.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        )
        self._expected_peer_id = _normalise_peer_id(expected_peer_id)
        self._state = HandshakeState.AWAIT_EPHEMERAL
        self._outgoing = bytearray(encode_ephemeral_message(self.local_ephemeral_public))
        self._inbuf = bytearray()  # plaintext phase: the peer's ephemeral message
        self._auth = bytearray()  # decrypted phase: the peer's AuthSigMessage
        self._stream: SecretStream | None = None
        self._challenge = b""
        self._result: HandshakeResult | None = None

    # -- public surface ----------------------------------------------------------

    @property
    def state(self) -> HandshakeState:
        return self._state

    @property
    def done(self) -> bool:
        return self._state is HandshakeState.DONE

    @property
    def buffered(self) -> int:
        """Peer bytes held while waiting for more (bounded: < 35 + 1044 + auth cap)."""
        stream = 0 if self._stream is None else self._stream.buffered
        return len(self._inbuf) + len(self._auth) + stream

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (may be empty); each call drains the queue."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer, in any chunking."""
        if self._state is HandshakeState.FAILED:
            raise HandshakeError("handshake already failed")
        if self._state is HandshakeState.DONE:
            raise HandshakeError("handshake already complete; later bytes belong to the stream")
        try:
            self._receive(bytes(data))
        except Exception:
            self._state = HandshakeState.FAILED
            self._outgoing.clear()
            raise

    def result(self) -> HandshakeResult:
        if self._result is None:
            raise HandshakeError(f"handshake not complete (state {self._state.value})")
        return self._result

    # -- steps -----------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        if self._state is HandshakeState.AWAIT_EPHEMERAL:
            need = _EPHEMERAL_MESSAGE_SIZE - len(self._inbuf)
            head, data = data[:need], data[need:]
            self._inbuf += head
            self._check_ephemeral_prefix()
            if len(self._inbuf) < _EPHEMERAL_MESSAGE_SIZE:
                return
            self._on_ephemeral(bytes(self._inbuf[len(EPHEMERAL_MESSAGE_PREFIX) :]))
            self._inbuf.clear()
        if self._state is HandshakeState.AWAIT_AUTH_SIG and data:
            assert self._stream is not None
            self._auth += self._stream.receive_data(data)
            self._try_auth_sig()

    def _check_ephemeral_prefix(self) -> None:
        got = bytes(self._inbuf[: len(EPHEMERAL_MESSAGE_PREFIX)])
        if got != EPHEMERAL_MESSAGE_PREFIX[: len(got)]:
            raise HandshakeError(
                "malformed ephemeral key message: expected 22 0a 20 followed by 32 bytes"
            )

    def _on_ephemeral(self, remote: bytes) -> None:
        local = self.local_ephemeral_public
        if hmac.compare_digest(remote, local):
            raise HandshakeError("peer sent our own ephemeral key back")
        try:
            dh = self._ephemeral.exchange(X25519PublicKey.from_public_bytes(remote))
        except ValueError:
            # OpenSSL refuses an all-zero shared secret itself; treat it like ours.
            dh = _ZERO_KEY
        if hmac.compare_digest(dh, _ZERO_KEY):
            raise HandshakeError("peer ephemeral key is of low order (all-zero shared secret)")
        lower, upper, loc_is_least = sort_ephemeral_keys(local, remote)
        secrets = derive_secrets(dh, loc_is_least)
        self._challenge = merlin_challenge(lower, upper, dh)
        self._stream = SecretStream(secrets.send_key, secrets.recv_key)
        signature = self._identity.sign(self._challenge)
        self._outgoing += self._stream.seal(encode_auth_sig(self.local_public_key, signature))
        self._state = HandshakeState.AWAIT_AUTH_SIG

    def _try_auth_sig(self) -> None:
        buf = self._auth
        parsed = _read_uvarint(buf, 0, complete=False)
        if parsed is None:
            return
        body_len, start = parsed
        if body_len > MAX_AUTH_SIG_BODY:
            raise HandshakeError(f"AuthSigMessage of {body_len} bytes is too long")
        end = start + body_len
        if len(buf) < end:
            return
        remote_key, signature = _decode_auth_sig(bytes(buf[start:end]))
        try:
            Ed25519PublicKey.from_public_bytes(remote_key).verify(signature, self._challenge)
        except (InvalidSignature, ValueError):
            raise HandshakeError("peer's AuthSig signature does not verify") from None
        remote_id = peer_id(remote_key)
        expected = self._expected_peer_id
        if expected is not None and not hmac.compare_digest(remote_id, expected):
            raise HandshakeError(f"peer ID {remote_id} is not the expected {expected}")
        assert self._stream is not None
        self._result = HandshakeResult(
            remote_public_key=remote_key,
            remote_peer_id=remote_id,
            stream=self._stream,
            initial_plaintext=bytes(buf[end:]),
        )
        self._auth = bytearray()
        self._state = HandshakeState.DONE


# -- strict protobuf reading for AuthSigMessage ---------------------------------------


def _read_uvarint(
    buf: bytes | bytearray, pos: int, *, complete: bool = True
) -> tuple[int, int] | None:
    """Decode a uvarint at pos -> (value, next pos); None if more bytes are needed."""
    value = 0
    for i in range(10):
        if pos + i >= len(buf):
            if complete:
                raise HandshakeError("truncated varint in AuthSigMessage")
            return None
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value >> 64:
                break
            return value, pos + i + 1
    raise HandshakeError("overlong varint in AuthSigMessage")


def _read_fields(body: bytes, what: str) -> list[tuple[int, bytes]]:
    """Split a message into (field number, bytes) pairs; only LEN fields are allowed."""
    fields: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(body):
        parsed = _read_uvarint(body, pos)
        assert parsed is not None
        tag, pos = parsed
        number, wire_type = tag >> 3, tag & 7
        if wire_type != _WIRE_LEN or number == 0:
            raise HandshakeError(f"unexpected field {number} (wire type {wire_type}) in {what}")
        parsed = _read_uvarint(body, pos)
        assert parsed is not None
        size, pos = parsed
        if size > len(body) - pos:
            raise HandshakeError(f"field {number} of {what} runs past the end of the message")
        fields.append((number, body[pos : pos + size]))
        pos += size
    numbers = [n for n, _ in fields]
    if len(set(numbers)) != len(numbers):
        raise HandshakeError(f"repeated field in {what}")
    return fields


def _decode_auth_sig(body: bytes) -> tuple[bytes, bytes]:
    """AuthSigMessage{1: PublicKey{1: ed25519 (32)}, 2: sig (64)} -> (pubkey, sig)."""
    fields = dict(_read_fields(body, "AuthSigMessage"))
    unknown = sorted(set(fields) - {1, 2})
    if unknown:
        raise HandshakeError(f"unexpected field {unknown[0]} in AuthSigMessage")
    if 1 not in fields:
        raise HandshakeError("AuthSigMessage has no public key")
    if 2 not in fields:
        raise HandshakeError("AuthSigMessage has no signature")
    key_fields = _read_fields(fields[1], "PublicKey")
    if len(key_fields) != 1:
        raise HandshakeError("PublicKey must hold exactly one key")
    key_type, key = key_fields[0]
    if key_type != 1:
        name = _PUBKEY_TYPES.get(key_type, f"field {key_type}")
        raise HandshakeError(f"peer identity key type {name} is not supported (only ed25519)")
    if len(key) != KEY_SIZE:
        raise HandshakeError(f"peer ed25519 key is {len(key)} bytes, expected {KEY_SIZE}")
    signature = fields[2]
    if len(signature) != SIGNATURE_SIZE:
        raise HandshakeError(f"peer signature is {len(signature)} bytes, expected 64")
    return key, signature
