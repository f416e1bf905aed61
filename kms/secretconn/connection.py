"""asyncio adapter for SecretConnection: handshake over a stream pair, then encrypted I/O.

Owns: pumping bytes between an asyncio (StreamReader, StreamWriter) pair and the sans-IO
`Handshake` / `SecretStream`, the handshake deadline, and turning transport failures into
kms errors. Used by the daemon's links (dialer) and by the simulated validator (listener);
both roles call `open_secret_connection` the same way.

Rules:
- The handshake is "write then read" at each step and must finish within `timeout`
  seconds, else HandshakeTimeout. Any handshake failure (bad peer data, EOF, socket
  error, timeout, cancellation) closes the writer before the error propagates
  (`kms.transport.run_handshake`, shared with Noise).
- `read()` returns the next chunk of decrypted payload (not message-aligned: privval
  framing is the caller's job); EOF or a socket error -> LinkClosed; bad frames ->
  FrameError, and the connection stays failed.
- `write(data)` seals one message (one privval message per call) and drains.
- No read/write deadlines here: the link layer wraps calls in its own timeouts.

Never touches: privval encoding, keys on disk, signing state, reconnect policy.
"""

from __future__ import annotations

import asyncio

from kms.errors import HandshakeTimeout
from kms.secretconn.handshake import Handshake, HandshakeResult, peer_id
from kms.secretconn.stream import SecretStream
from kms.transport import SealedTransport, run_handshake

__all__ = [
    "HandshakeTimeout",
    "SecretConnection",
    "SecretStream",
    "open_secret_connection",
    "peer_id",
]


class SecretConnection(SealedTransport):
    """An authenticated, encrypted byte stream over an asyncio stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        result: HandshakeResult,
        *,
        local_public_key: bytes,
    ) -> None:
        super().__init__(
            reader, writer, result.stream, result.initial_plaintext, what="secret connection"
        )
        self.remote_public_key: bytes = result.remote_public_key
        self.remote_peer_id: str = result.remote_peer_id
        self.local_public_key: bytes = local_public_key


async def open_secret_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    identity_seed: bytes,
    *,
    expected_peer_id: str | None = None,
    timeout: float = 5.0,
    ephemeral_secret: bytes | None = None,
) -> SecretConnection:
    """Run the handshake on an open stream pair and return the encrypted connection.

    Raises HandshakeError (HandshakeTimeout on deadline, also for EOF and socket errors
    during the handshake) or FrameError (the peer's AuthSig frame failed to
    authenticate). ValueError for a malformed seed/secret/expected_peer_id argument.
    """
    handshake = Handshake(
        identity_seed, ephemeral_secret=ephemeral_secret, expected_peer_id=expected_peer_id
    )
    await run_handshake(reader, writer, handshake, timeout=timeout, what="handshake")
    return SecretConnection(
        reader, writer, handshake.result(), local_public_key=handshake.local_public_key
    )
