"""libp2p's Noise handshake over BE16 frames, sans-IO, for the dialer and the listener.

Owns: the three framed XX messages with libp2p's signed payload (NOISE.md §2.3), the
check of the peer's identity, the peer-ID pin, and the hand-over to `NoiseStream`.

Use (h11 style, like `kms.secretconn.handshake`):

    hs = NoiseHandshake(identity_seed, initiator=True, expected_peer_id="12D3KooW...")
    send(hs.data_to_send())                # initiator: message 1 (34 bytes)
    while not hs.done:
        hs.receive_data(recv())            # any chunking
        send(hs.data_to_send())            # initiator: message 3, once message 2 checked out
    result = hs.result()

Rules:
- kms dials, so kms is the initiator; the responder role exists for the in-process
  test node and is held to the same checks.
- The peer's identity is verified and, with `expected_peer_id`, compared with the pin
  right after message 2, BEFORE message 3 is produced: a wrong node learns nothing
  about us (not even our identity) and gets no request answered. PeerMismatch names both IDs.
- Handshake messages are capped at MAX_HANDSHAKE_MESSAGE; bytes from the responder
  beyond message 2 (it must wait for message 3) are refused; surplus after message 3
  (initiator data) is handed to the stream.
- Fresh X25519 static and ephemeral keys per connection (go-libp2p does the same).
- Any failure is final (state FAILED); only HandshakeError/FrameError leave this module.

Never touches: sockets, asyncio, the clock, key files.
"""

from __future__ import annotations

import enum
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kms.errors import HandshakeError, PeerMismatch
from kms.noise.payload import PeerIdentity, encode_payload, verify_payload
from kms.noise.peerid import parse_peer_id, peer_id_from_ed25519
from kms.noise.state import DH_LEN, XXHandshake
from kms.noise.stream import FrameBuffer, NoiseStream, frame_bytes

__all__ = ["NoiseHandshake", "NoiseHandshakeResult", "NoiseHandshakeState"]

MAX_HANDSHAKE_MESSAGE = 8192 + 2 * DH_LEN + 32  # payload cap + keys + tags


class NoiseHandshakeState(enum.Enum):
    AWAIT_MESSAGE_1 = "await-message-1"  # responder
    AWAIT_MESSAGE_2 = "await-message-2"  # initiator
    AWAIT_MESSAGE_3 = "await-message-3"  # responder
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class NoiseHandshakeResult:
    remote_public_key: bytes  # the peer's Ed25519 identity
    remote_peer_id: str
    stream: NoiseStream
    initial_plaintext: bytes  # transport data that arrived with the last handshake message


class NoiseHandshake:
    """One side of a libp2p Noise handshake."""

    def __init__(
        self,
        identity_seed: bytes,
        *,
        initiator: bool,
        expected_peer_id: str | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        static_secret: bytes | None = None,
        ephemeral_secret: bytes | None = None,
    ) -> None:
        if len(identity_seed) != 32:
            raise ValueError("the identity seed must be 32 bytes (Ed25519 private seed)")
        if expected_peer_id is not None:
            parse_peer_id(expected_peer_id)  # ValueError for a malformed pin
        self._identity = Ed25519PrivateKey.from_private_bytes(identity_seed)
        self.local_public_key = self._identity.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        )
        self.local_peer_id = peer_id_from_ed25519(self.local_public_key)
        self._expected = expected_peer_id
        self._xx = XXHandshake(
            initiator=initiator,
            static_secret=static_secret or random_bytes(DH_LEN),
            ephemeral_secret=ephemeral_secret or random_bytes(DH_LEN),
        )
        self._frames = FrameBuffer()
        self._outgoing = bytearray()
        self._peer: PeerIdentity | None = None
        self._result: NoiseHandshakeResult | None = None
        if initiator:
            self._outgoing += frame_bytes(self._xx.write_message(b""))
            self._state = NoiseHandshakeState.AWAIT_MESSAGE_2
        else:
            self._state = NoiseHandshakeState.AWAIT_MESSAGE_1

    @property
    def state(self) -> NoiseHandshakeState:
        return self._state

    @property
    def done(self) -> bool:
        return self._state is NoiseHandshakeState.DONE

    @property
    def buffered(self) -> int:
        """Peer bytes held while waiting for the rest of a message (bounded)."""
        return len(self._frames)

    def data_to_send(self) -> bytes:
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._state is NoiseHandshakeState.FAILED:
            raise HandshakeError("Noise handshake already failed")
        if self._state is NoiseHandshakeState.DONE:
            raise HandshakeError("Noise handshake already complete; later bytes go to the stream")
        try:
            self._receive(bytes(data))
        except Exception:
            self._state = NoiseHandshakeState.FAILED
            self._outgoing.clear()
            self._frames = FrameBuffer()
            raise

    def result(self) -> NoiseHandshakeResult:
        if self._result is None:
            raise HandshakeError(f"Noise handshake not complete (state {self._state.value})")
        return self._result

    # -- steps ----------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        pos = 0
        while not self.done:
            message = self._frames.next_frame()
            if message is None:
                if pos >= len(data):
                    return
                need = self._frames.need()
                if len(self._frames) >= 2 and need + len(self._frames) - 2 > MAX_HANDSHAKE_MESSAGE:
                    raise HandshakeError("Noise handshake message is too long")
                self._frames.feed(data[pos : pos + need])
                pos += need
                continue
            self._on_message(message)
        surplus = self._frames.take_rest() + data[pos:]
        assert self._result is not None
        if surplus:
            if self._xx.initiator:
                raise HandshakeError("peer sent data before our last handshake message")
            plain = self._result.stream.receive_data(surplus)
            self._result = NoiseHandshakeResult(
                self._result.remote_public_key,
                self._result.remote_peer_id,
                self._result.stream,
                plain,
            )

    def _on_message(self, message: bytes) -> None:
        xx = self._xx
        if self._state is NoiseHandshakeState.AWAIT_MESSAGE_1:
            if len(message) != DH_LEN:
                # go-libp2p ignores a message-1 payload; our test node insists on none
                raise HandshakeError(f"Noise message 1 must be 32 bytes, got {len(message)}")
            xx.read_message(message)
            payload = encode_payload(self._identity, xx.static_public, empty_extensions=True)
            self._outgoing += frame_bytes(xx.write_message(payload))
            self._state = NoiseHandshakeState.AWAIT_MESSAGE_3
        elif self._state is NoiseHandshakeState.AWAIT_MESSAGE_2:
            payload = xx.read_message(message)
            self._check_peer(payload)  # before anything of ours goes out
            mine = encode_payload(self._identity, xx.static_public)
            self._outgoing += frame_bytes(xx.write_message(mine))
            self._finish()
        else:
            payload = xx.read_message(message)
            self._check_peer(payload)
            self._finish()

    def _check_peer(self, payload: bytes) -> None:
        assert self._xx.remote_static is not None
        peer = verify_payload(payload, self._xx.remote_static)
        expected = self._expected
        if expected is not None and not hmac.compare_digest(peer.peer_id, expected):
            raise PeerMismatch(
                f"peer ID mismatch: the node is {peer.peer_id}, expected {expected};"
                " closed before sending anything"
            )
        self._peer = peer

    def _finish(self) -> None:
        assert self._peer is not None
        send, recv = self._xx.split()
        self._result = NoiseHandshakeResult(
            self._peer.public_key, self._peer.peer_id, NoiseStream(send, recv), b""
        )
        self._state = NoiseHandshakeState.DONE
