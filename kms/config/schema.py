"""What a kms config file may contain: the keys each section allows, the choices and limits.

Owns: the allowed keys of every section (so the example file and the loader can
be checked against each other), the tmkms sections and providers kms refuses
with a reason, the literal choices (key types, raw_bytes, policies, softsign
formats) and the numeric limits the section parsers enforce. Never reads a file
or parses a value: constants only, so every other config module can import it.
"""

from __future__ import annotations

from typing import Literal

HSM_SESSION_IDLE_LIMIT = 30.0  # seconds; a YubiHSM2 closes an idle session after this
MIN_OBJECT_ID, MAX_OBJECT_ID = 1, 0xFFFE  # YubiHSM2 object IDs (0 and 0xFFFF are not usable)
MAX_UNIX_PATH = 107  # bytes: sockaddr_un.sun_path is 108 on Linux, including the final NUL
AMINO_PROTOCOLS = ("legacy", "v0.33", "0.33")  # tmkms names for amino-era nodes: refused

TOP_KEYS = ("chain", "validator", "providers", "hsm", "metrics", "shared_state")
TOP_UNSUPPORTED = {
    "tx_signer": "tmkms's transaction signer is not supported by kms; remove this section",
}
PROVIDER_KEYS = ("yubihsm", "softsign")
PROVIDER_UNSUPPORTED = {
    "ledgertm": "the Ledger provider is not supported by kms; use yubihsm or softsign",
    "fortanixdsm": "the Fortanix DSM provider is not supported by kms; use yubihsm or softsign",
}
CHAIN_KEYS = (
    "id",
    "key_format",
    "state_file",
    "sign_extensions",
    "max_height",
    "audit_log",
    "raw_bytes",
    "state_hook",
    "shared_state",
    "key_type",
)
# The consensus key types CometBFT v0.40 knows (tendermint.crypto.PublicKey 1..5); kms
# signs the first only. Naming another is refused at start, never answered wrongly.
CONSENSUS_KEY_TYPES = ("ed25519", "secp256k1", "bls12381", "mldsa65", "secp256k1eth")
VALIDATOR_KEYS = (
    "chain_id",
    "addr",
    "secret_key",
    "protocol_version",
    "reconnect",
    "timeout",
    "max_height",
)
YUBIHSM_KEYS = ("adapter", "auth", "keys", "serial_number", "connector_server")
SOFTSIGN_KEYS = ("chain_ids", "key_type", "key_format", "path")
HSM_KEYS = ("policy", "health_interval", "connect_timeout", "request_timeout", "hedge")
METRICS_KEYS = ("textfile", "listen", "interval")
SHARED_KEYS = (
    "backend", "endpoints", "prefix", "host_id", "timeout", "auth", "tls", "insecure",
    "preference",
)  # fmt: skip

ARRAY_OF = "an array of tables ([[{0}]] sections)"
HEIGHT = 'a block height (a positive integer, or a decimal string such as "25000000")'
OBJECT_ID = f"an object ID from {MIN_OBJECT_ID} to {MAX_OBJECT_ID}"
MAX_SOFTSIGN_FILE = 64 * 1024

KeyType = Literal["consensus", "account"]
KEY_TYPES: tuple[KeyType, ...] = ("consensus", "account")
RawBytes = Literal["off", "prefixed"]
RAW_BYTES: tuple[RawBytes, ...] = ("off", "prefixed")
SoftFormat = Literal["base64", "json"]
SOFT_FORMATS: tuple[SoftFormat, ...] = ("base64", "json")
Policy = Literal["spread", "primary"]
POLICIES: tuple[Policy, ...] = ("spread", "primary")
