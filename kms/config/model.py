"""The shape of a kms configuration: frozen dataclasses, one per section.

Owns: Config and the per-section types (chains, validators, YubiHSM and softsign
providers, the HSM policy, metrics, shared state) with their defaults. Never
parses or checks anything: a value here has already passed the section
parsers (`kms.config.load_config` is the way to get one from a file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kms.privval.messages import Dialect
from kms.pubkey import KeyFormat


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
    # NEW: with a [shared_state] section, false keeps this chain on its local state alone
    shared_state: bool = True


@dataclass(frozen=True, slots=True)
class ValidatorConfig:
    chain_id: str
    addr: str  # as written in the file
    scheme: Literal["tcp", "unix", "noise"]
    host: str  # tcp/noise only ("" for unix)
    port: int  # tcp/noise only (0 for unix)
    # tcp://<id>@host:port -> lower-case hex node ID to verify;
    # noise://<peer-id>@host:port -> the node's libp2p peer ID (12D3KooW...), always pinned
    peer_id: str | None
    path: Path | None  # unix only
    secret_key: Path | None  # identity key for SecretConnection/Noise (required for tcp, noise)
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
    timeout_ms: int | None = None  # tmkms `adapter = { type = "usb", timeout_ms = N }`


@dataclass(frozen=True, slots=True)
class YubiHsmKey:
    chain_ids: tuple[str, ...]
    key: int  # object ID of the asymmetric key
    key_type: Literal["consensus", "account"] = "consensus"  # tmkms `type`; kms signs consensus


@dataclass(frozen=True, slots=True)
class YubiHsmProvider:
    name: str  # derived, unique: e.g. "hsm-a.internal:12345" or "usb:0123456789"
    adapter: HttpAdapter | UsbAdapter
    auth_key: int
    password_file: Path | None
    # only from a tmkms file that inlines it (warned about at load); never in a repr
    password: str | None = field(repr=False)
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
    request_timeout: float = 1.0  # seconds, one device command (a signature is ~0.11-0.15 s)
    hedge: bool = True  # a stalled replica's request also goes to the next healthy one


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    textfile: Path | None = None
    listen: tuple[str, int] | None = None  # loopback only
    interval: float = 5.0


DEFAULT_PREFERENCE_DELAY = 0.2  # seconds


@dataclass(frozen=True, slots=True)
class SharedStateConfig:
    """NEW [shared_state]: several signer hosts share one watermark per chain in etcd."""

    endpoints: tuple[str, ...]
    prefix: str
    host_id: str
    timeout: float = 1.0  # seconds, one etcd call
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False  # allow http:// endpoints (loopback tests)
    preference_ttl: int | None = None  # seconds; None: no host preference
    preference_delay: float = 0.2  # DEFAULT_PREFERENCE_DELAY: a non-preferred host's wait
    backend: Literal["etcd"] = "etcd"


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    chains: tuple[ChainConfig, ...]
    validators: tuple[ValidatorConfig, ...]
    yubihsm: tuple[YubiHsmProvider, ...]
    softsign: tuple[SoftsignProvider, ...]
    hsm: HsmPolicy
    metrics: MetricsConfig
    warnings: tuple[str, ...] = ()  # accepted-but-ignored tmkms options etc., one line each
    shared_state: SharedStateConfig | None = None

    def chain(self, chain_id: str) -> ChainConfig:
        for c in self.chains:
            if c.id == chain_id:
                return c
        raise KeyError(chain_id)
