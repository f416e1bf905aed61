"""asyncio adapter for the Noise transport: handshake over a stream pair, then frames.

Owns: pumping bytes between an asyncio (StreamReader, StreamWriter) pair and the sans-IO
`NoiseHandshake` / `NoiseStream`, the handshake deadline, and turning socket failures
into kms errors. Used by the daemon's links (initiator) and by the in-process test node
(responder). Implements `kms.transport.Transport`.

Rules:
- The whole handshake must finish within `timeout` seconds (the node gives us 5 s);
  any failure closes the writer before the error propagates, so a peer with the wrong
  ID is dropped before we send message 3.
- `read()` returns the next non-empty chunk of decrypted bytes (privval framing is the
  caller's job); EOF or a socket error -> LinkClosed; bad frames -> FrameError.
- `write(data)` seals one message into <= 65519-byte frames and drains.

Never touches: privval encoding, keys on disk, signing state, reconnect policy.
"""

from __future__ import annotations

import asyncio

from kms.noise.handshake import NoiseHandshake, NoiseHandshakeResult
from kms.transport import SealedTransport, run_handshake

__all__ = ["NoiseConnection", "open_noise_connection"]


class NoiseConnection(SealedTransport):
    """An authenticated, encrypted byte stream over an asyncio stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        result: NoiseHandshakeResult,
        *,
        local_peer_id: str,
    ) -> None:
        super().__init__(
            reader, writer, result.stream, result.initial_plaintext, what="noise connection"
        )
        self.remote_public_key = result.remote_public_key
        self.remote_peer_id = result.remote_peer_id
        self.local_peer_id = local_peer_id


async def open_noise_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    identity_seed: bytes,
    *,
    initiator: bool = True,
    expected_peer_id: str | None = None,
    timeout: float = 5.0,
) -> NoiseConnection:
    """Run the handshake on an open stream pair and return the encrypted connection.

    Raises HandshakeError (PeerMismatch for the wrong peer ID; also for EOF, socket
    errors and the deadline) or FrameError. ValueError for a malformed argument.
    """
    hs = NoiseHandshake(identity_seed, initiator=initiator, expected_peer_id=expected_peer_id)
    await run_handshake(reader, writer, hs, timeout=timeout, what="Noise handshake")
    return NoiseConnection(reader, writer, hs.result(), local_peer_id=hs.local_peer_id)
