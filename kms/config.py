"""Configuration: tmkms-format TOML -> frozen dataclasses, fully validated.

Owns: the shape of the configuration (these dataclasses) and its loading and
cross-checking. Every error is a ConfigError naming the file, the section and
the key, and what was expected. Never opens sockets or devices.

(The loader is filled in by the config work; the dataclasses below are the
contract other modules code against.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kms.privval.messages import Dialect


@dataclass(frozen=True, slots=True)
class KeyFormat:
    type: Literal["bech32", "cosmos-json", "hex"] = "bech32"
    account_key_prefix: str = "cosmospub"
    consensus_key_prefix: str = "cosmosvalconspub"


@dataclass(frozen=True, slots=True)
class ChainConfig:
    id: str
    key_format: KeyFormat
    state_file: Path
    sign_extensions: bool = True
    max_height: int | None = None
    audit_log: Path | None = None
    # NEW: raw-bytes signing (v1 SignBytesRequest / Celestia SignRawBytesRequest):
    # "off" (refuse, the default) or "prefixed" (sign only with a domain-separation prefix)
    raw_bytes: Literal["off", "prefixed"] = "off"


@dataclass(frozen=True, slots=True)
class ValidatorConfig:
    chain_id: str
    addr: str  # as written in the file
    scheme: Literal["tcp", "unix"]
    host: str  # tcp only ("" for unix)
    port: int  # tcp only (0 for unix)
    peer_id: str | None  # tcp://<id>@host:port -> lower-case hex node ID to verify
    path: Path | None  # unix only
    secret_key: Path | None  # identity key for SecretConnection (required for tcp)
    protocol_version: Dialect = Dialect.V0_38
    reconnect: bool = True
    timeout: float = 5.0  # seconds; see kms.link for how read/write deadlines use it

    @property
    def name(self) -> str:
        """A short label for logs and metrics."""
        return self.addr


@dataclass(frozen=True, slots=True)
class HttpAdapter:
    host: str
    port: int
    type: Literal["http"] = "http"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UsbAdapter:
    serial_number: str | None = None
    type: Literal["usb"] = "usb"


@dataclass(frozen=True, slots=True)
class YubiHsmKey:
    chain_ids: tuple[str, ...]
    key: int  # object ID of the asymmetric key


@dataclass(frozen=True, slots=True)
class YubiHsmProvider:
    name: str  # derived, unique: e.g. "hsm-a.internal:12345" or "usb:0123456789"
    adapter: HttpAdapter | UsbAdapter
    auth_key: int
    password_file: Path | None
    password: str | None  # only from a tmkms file that inlines it (warned about at load)
    keys: tuple[YubiHsmKey, ...]


@dataclass(frozen=True, slots=True)
class SoftsignProvider:
    chain_ids: tuple[str, ...]
    key_type: Literal["consensus", "account"]
    key_format: Literal["base64", "json"]
    path: Path


@dataclass(frozen=True, slots=True)
class HsmPolicy:
    policy: Literal["spread", "primary"] = "spread"
    health_interval: float = 10.0  # seconds
    connect_timeout: float = 1.0  # seconds, per HTTP connection attempt
    request_timeout: float = 2.0  # seconds, one device command (a signature is ~0.11-0.15 s)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    textfile: Path | None = None
    listen: tuple[str, int] | None = None  # loopback only
    interval: float = 5.0


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    chains: tuple[ChainConfig, ...]
    validators: tuple[ValidatorConfig, ...]
    yubihsm: tuple[YubiHsmProvider, ...]
    softsign: tuple[SoftsignProvider, ...]
    hsm: HsmPolicy
    metrics: MetricsConfig

    def chain(self, chain_id: str) -> ChainConfig:
        for c in self.chains:
            if c.id == chain_id:
                return c
        raise KeyError(chain_id)
