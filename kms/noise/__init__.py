"""libp2p Noise (CometBFT v0.40's `noise://` privval transport, NOISE.md).

Sans-IO core: `state` (Noise XX, spec vectors), `peerid` (libp2p keys and peer IDs),
`payload` (signed static key), `stream` (BE16 frames), `handshake` (framed XX + pin);
`connection` is the thin asyncio adapter. Never touches privval encoding or signing.

Import the submodules directly: this package imports nothing, so `kms.config` (which
only needs `peerid`) stays cheap to load for every CLI command.
"""
