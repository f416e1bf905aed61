"""CometBFT's protocol limits on what a validator signs, defined once.

Owns: the largest height, round and chain ID a node can send or a state can hold
(CometBFT: heights are int64 and must be positive, rounds int32 and non-negative,
types.MaxChainIDLen = 50). The config, the double-sign rules, the state file
formats, the shared watermark record and the CLI all check against these.
Message-size limits belong to the framing (`kms.privval.framing`).

Never imports anything: every layer may depend on it.
"""

from __future__ import annotations

MAX_HEIGHT = 2**63 - 1
MAX_ROUND = 2**31 - 1
MAX_CHAIN_ID_LEN = 50  # CometBFT's types.MaxChainIDLen
