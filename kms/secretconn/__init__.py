"""SecretConnection (CometBFT's authenticated encryption for tcp:// privval links).

Sans-IO core: `merlin` (transcript), `kdf` (key schedule), `frame` + `cipher` (frames),
`stream` (encrypted byte stream), `handshake` (state machine); `connection` is the thin
asyncio adapter. This package never touches privval encoding, signing or state.
"""

from __future__ import annotations

from kms.secretconn.connection import (
    HandshakeTimeout,
    SecretConnection,
    open_secret_connection,
)
from kms.secretconn.handshake import Handshake, HandshakeResult, HandshakeState, peer_id
from kms.secretconn.stream import SecretStream

__all__ = [
    "Handshake",
    "HandshakeResult",
    "HandshakeState",
    "HandshakeTimeout",
    "SecretConnection",
    "SecretStream",
    "open_secret_connection",
    "peer_id",
]
