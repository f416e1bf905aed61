"""Configuration: tmkms-format TOML -> frozen dataclasses, fully validated.

Owns: the shape of the configuration (the dataclasses in `model`), loading it, checking
every value and cross-checking sections, and finding the config file
(`config_path_from_env`). Never opens sockets or devices; the only files it
touches are the config file and the secret files it names (stat + read to check
they exist, are private and parse).

Rules:
- The format is tmkms's (an existing tmkms.toml with softsign or YubiHSM loads
  unchanged); what kms adds is marked NEW in tmkms.toml.example.
- Unknown keys are errors. Every error is one ConfigError line naming the file,
  the section (`[[validator]] #2`), the key, what was expected and what was found.
- Relative paths are resolved against the config file's directory (tmkms used the
  working directory; the two agree when kms runs from there).
- Cross-checks at load: every validator's chain exists, every chain has exactly
  one kind of consensus key (one softsign key, or YubiHSM replicas), every key's
  chain exists, no duplicates; secret files (identity key, HSM password, softsign
  key) exist, are readable and are not group/world accessible.
- Accepted from tmkms but not acted on (each gives a warning in `Config.warnings`):
  `state_hook` with `fail_closed = false` (kms never moves a watermark from a
  hook; a hook with `fail_closed = true` is refused so the operator carries the
  watermark with `kms state set`), `connector_server`, `[[validator]] max_height`
  (folded into the chain's `max_height`, the lowest wins), inline `password`,
  account keys (kms signs consensus messages only).

Layout: `model` (the dataclasses), `load` (finding and reading the file),
`parser` (section order), `table` (one table, one-line errors), `schema` (allowed
keys, choices, limits), `addresses`, `chain_section`, `provider_section`,
`service_section`, `crosscheck`. This `__init__` re-exports the public names the
rest of kms imports (`from kms.config import load_config, Config, ...`), so
callers need not know the layout.
"""

from __future__ import annotations

from kms.config.addresses import (
    VALIDATOR_ADDR_FORMS,
    ParsedAddr,
    noise_addr_problem,
    parse_validator_addr,
)
from kms.config.load import (
    CONFIG_ENV_VARS,
    CONFIG_FILE_NAME,
    config_path_from_env,
    load_config,
    parse_config,
)
from kms.config.model import (
    DEFAULT_PREFERENCE_DELAY,
    ChainConfig,
    Config,
    HsmPolicy,
    HttpAdapter,
    MetricsConfig,
    SharedStateConfig,
    SoftsignProvider,
    UsbAdapter,
    ValidatorConfig,
    YubiHsmKey,
    YubiHsmProvider,
)
from kms.config.schema import CONSENSUS_KEY_TYPES
from kms.privval.limits import MAX_CHAIN_ID_LEN, MAX_HEIGHT
from kms.pubkey import KeyFormat  # its home is below kms.config (kms.pubkey needs no config)

__all__ = [
    "CONFIG_ENV_VARS",
    "CONFIG_FILE_NAME",
    "CONSENSUS_KEY_TYPES",
    "DEFAULT_PREFERENCE_DELAY",
    "MAX_CHAIN_ID_LEN",
    "MAX_HEIGHT",
    "VALIDATOR_ADDR_FORMS",
    "ChainConfig",
    "Config",
    "HsmPolicy",
    "HttpAdapter",
    "KeyFormat",
    "MetricsConfig",
    "ParsedAddr",
    "SharedStateConfig",
    "SoftsignProvider",
    "UsbAdapter",
    "ValidatorConfig",
    "YubiHsmKey",
    "YubiHsmProvider",
    "config_path_from_env",
    "load_config",
    "noise_addr_problem",
    "parse_config",
    "parse_validator_addr",
]
