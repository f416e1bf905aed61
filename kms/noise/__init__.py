"""libp2p Noise (CometBFT v0.40's `noise://` privval transport, NOISE.md).

Sans-IO core: `state` (Noise XX, spec vectors), `peerid` (libp2p keys and peer IDs),
`payload` (signed static key), `stream` (BE16 frames), `handshake` (framed XX + pin);
`connection` is the thin asyncio adapter. Never touches privval encoding or signing.
"""

from __future__ import annotations

from kms.noise.connection import NoiseConnection, open_noise_connection
from kms.noise.handshake import NoiseHandshake, NoiseHandshakeResult, NoiseHandshakeState
from kms.noise.peerid import parse_peer_id, peer_id_from_ed25519
from kms.noise.stream import NoiseStream

__all__ = [
    "NoiseConnection",
    "NoiseHandshake",
    "NoiseHandshakeResult",
    "NoiseHandshakeState",
    "NoiseStream",
    "open_noise_connection",
    "parse_peer_id",
    "peer_id_from_ed25519",
]
