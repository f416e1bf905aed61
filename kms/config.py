"""Configuration: tmkms-format TOML -> frozen dataclasses, fully validated.

Owns: the shape of the configuration (these dataclasses), loading it, checking
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
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import re
import socket
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn, TypeVar

from kms.errors import ConfigError, KeyFileError
from kms.identity import load_identity_key
from kms.keys import read_secret_file
from kms.noise.peerid import parse_peer_id
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


# =============================================================================
# Finding the file
# =============================================================================

CONFIG_FILE_NAME = "tmkms.toml"
CONFIG_ENV_VARS = ("KMS_CONFIG_FILE", "TMKMS_CONFIG_FILE")  # first set (non-empty) wins

_log = logging.getLogger(__name__)


def config_path_from_env(
    cli_value: str | Path | None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """`-c FILE`, else $KMS_CONFIG_FILE, else $TMKMS_CONFIG_FILE, else ./tmkms.toml.

    Empty values count as unset. `environ` defaults to `os.environ`.
    """
    if cli_value is not None and str(cli_value) != "":
        return Path(cli_value)
    env = os.environ if environ is None else environ
    for var in CONFIG_ENV_VARS:
        value = env.get(var, "")
        if value:
            return Path(value)
    return Path(CONFIG_FILE_NAME)


# =============================================================================
# Loading
# =============================================================================


def load_config(path: Path, *, check_files: bool = True) -> Config:
    """Read, parse and fully validate the config file at `path`.

    `check_files=False` skips the secret-file checks (for tools that create those
    files); `kms start` always checks. Raises ConfigError (one line).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (give -c FILE, or set $KMS_CONFIG_FILE"
            " or $TMKMS_CONFIG_FILE)"
        ) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    config = parse_config(text, path, check_files=check_files)
    inline = [i for i, p in enumerate(config.yubihsm, 1) if p.password is not None]
    if inline and check_files:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path}: [[providers.yubihsm]] #{inline[0]}: key 'auth.password':"
                f" the config file holds a password but has permissions {mode:04o};"
                f" run: chmod 600 {path} (better: move it to auth.password_file)"
            )
    return config


def parse_config(text: str, path: Path, *, check_files: bool = True) -> Config:
    """Parse config `text` as if read from `path` (names errors, anchors relative paths)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {_one_line(str(e))}") from None
    parser = _Parser(path, check_files)
    config = parser.parse(doc)
    for w in config.warnings:
        _log.warning("%s", w)
    return config


# =============================================================================
# Table reading with one-line errors
# =============================================================================

_REQUIRED = object()
_T = TypeVar("_T")

MAX_HEIGHT = 2**63 - 1
MAX_CHAIN_ID_LEN = 50  # CometBFT's MaxChainIDLen
HSM_SESSION_IDLE_LIMIT = 30.0  # seconds; a YubiHSM2 closes an idle session after this
MIN_OBJECT_ID, MAX_OBJECT_ID = 1, 0xFFFE  # YubiHSM2 object IDs (0 and 0xFFFF are not usable)
MAX_UNIX_PATH = 107  # bytes: sockaddr_un.sun_path is 108 on Linux, including the final NUL
AMINO_PROTOCOLS = ("legacy", "v0.33", "0.33")  # tmkms names for amino-era nodes: refused


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show(value: object) -> str:
    """A short, one-line rendering of a found value for error messages."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "an array of tables"
    if isinstance(value, bool):
        return "true" if value else "false"
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


class _Table:
    """One TOML table plus where it came from; every getter fails with a one-line ConfigError."""

    def __init__(
        self,
        file: Path,
        section: str,
        data: Mapping[str, object],
        allowed: tuple[str, ...],
        prefix: str = "",
        unsupported: Mapping[str, str] | None = None,
    ) -> None:
        self.file, self.section, self.data, self.prefix = file, section, data, prefix
        self.base = file.parent.resolve()
        for k in data:
            if k in (unsupported or {}):
                self.fail(k, (unsupported or {})[k])
            if k not in allowed:
                self.fail(k, f"unknown key; expected one of: {', '.join(allowed)}")

    def where(self, key: str) -> str:
        return f"{self.file}: {self.section}: key '{self.prefix}{key}'"

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.where(key)}: {_one_line(message)}")

    def expected(self, key: str, what: str) -> NoReturn:
        if key not in self.data:
            self.fail(key, f"missing; expected {what}")
        self.fail(key, f"expected {what}, got {_show(self.data[key])}")

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: object, what: str) -> object:
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            self.expected(key, what)
        return default

    def text(
        self,
        key: str,
        what: str = "a non-empty string",
        default: object = _REQUIRED,
        check: Callable[[str], bool] = bool,
    ) -> str:
        value = self._get(key, default, what)
        if key in self.data and not (isinstance(value, str) and check(value)):
            self.expected(key, what)
        assert isinstance(value, str)
        return value

    def secret_text(self, key: str, what: str) -> str:
        """Like text(), but a wrong value is described by its type only: it may be a secret."""
        value = self.data.get(key)
        if not (isinstance(value, str) and value):
            found = (
                f"got {type(value).__name__} (value not shown: it may be a secret)"
                if key in self.data
                else "missing"
            )
            self.fail(key, f"expected {what}; {found}")
        return value

    def choice(self, key: str, choices: tuple[_T, ...], default: object = _REQUIRED) -> _T:
        what = " or ".join(f'"{c}"' for c in choices)
        value = self._get(key, default, what)
        for c in choices:
            if value == c:
                return c
        self.expected(key, what)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default, "true or false")
        if not isinstance(value, bool):
            self.expected(key, "true or false")
        return value

    def integer(
        self,
        key: str,
        lo: int,
        hi: int,
        what: str,
        default: object = _REQUIRED,
        strings: bool = False,
    ) -> int:
        value = self._get(key, default, what)
        if strings and isinstance(value, str) and re.fullmatch(r"[0-9]{1,19}", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.expected(key, what)
        return value

    def optional_integer(
        self, key: str, lo: int, hi: int, what: str, strings: bool = False
    ) -> int | None:
        if key not in self.data:
            return None
        return self.integer(key, lo, hi, what, strings=strings)

    def seconds(self, key: str, default: float) -> float:
        what = "a number of seconds greater than 0"
        value = self._get(key, default, what)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            self.expected(key, what)
        return float(value)

    def path(self, key: str, default: object = _REQUIRED) -> Path:
        what = "a file path"
        value = self._get(key, default, what)
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            self.expected(key, what)
        try:
            p = Path(value).expanduser()
        except RuntimeError:  # ~user of an unknown user
            self.expected(key, "a file path (cannot expand ~ here)")
        return p if p.is_absolute() else self.base / p

    def optional_path(self, key: str) -> Path | None:
        return self.path(key) if key in self.data else None

    def chain_ids(self, key: str) -> tuple[str, ...]:
        what = "a non-empty list of chain IDs"
        value = self._get(key, _REQUIRED, what)
        if not isinstance(value, list) or not value:
            self.expected(key, what)
        for item in value:
            if not isinstance(item, str) or not _valid_chain_id(item):
                self.fail(key, f"expected a list of chain IDs, got {_show(item)} in the list")
        if len(set(value)) != len(value):
            self.fail(key, "lists a chain ID twice")
        return tuple(value)

    def sub(self, key: str, allowed: tuple[str, ...], what: str) -> _Table:
        value = self._get(key, _REQUIRED, what)
        if not isinstance(value, dict):
            self.expected(key, what)
        return _Table(self.file, self.section, value, allowed, f"{self.prefix}{key}.")

    def array(self, key: str, what: str) -> list[dict[str, object]]:
        """An array of tables (`[[key]]` or `key = [{...}]`); absent -> []."""
        value = self._get(key, [], what)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.expected(key, what)
        return value


def _valid_chain_id(text: str) -> bool:
    return 0 < len(text) <= MAX_CHAIN_ID_LEN and re.fullmatch(r"[\x21-\x7e]+", text) is not None


# =============================================================================
# Addresses
# =============================================================================

_HOST_RE = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})"
)
_NODE_ID_RE = re.compile(r"[0-9A-Fa-f]{40}")
VALIDATOR_ADDR_FORMS = (
    "tcp://[<node-id>@]host:port (node-id: 40 hex chars), unix:///absolute/path"
    " or noise://<validator-peer-id>@host:port (peer ID from cometbft show-node-id --libp2p)"
)


def _host_port(text: str) -> tuple[str, int] | None:
    """'host:port' or '[v6]:port' -> (host without brackets, port); None if malformed."""
    m = _HOST_RE.fullmatch(text)
    if m is None:
        return None
    host, port = m["host"].lower(), int(m["port"])
    if not 0 < port <= 65535:
        return None
    if host.startswith("["):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            return None
    return host, port


@dataclass(frozen=True, slots=True)
class ParsedAddr:
    """A validator address, split (see ValidatorConfig for the meaning of each field)."""

    scheme: Literal["tcp", "unix", "noise"]
    host: str = ""
    port: int = 0
    peer_id: str | None = None
    path: Path | None = None


def parse_validator_addr(addr: str) -> ParsedAddr | None:
    """Parse `tcp://[id@]host:port`, `unix:///abs/path` or `noise://peer-id@host:port`;
    None when malformed."""
    if addr.startswith("noise://"):
        return _parse_noise_addr(addr[len("noise://") :])
    if addr.startswith("unix://"):
        rest = addr[len("unix://") :]
        if not rest.startswith("/") or "\0" in rest or rest.rstrip("/") == "":
            return None
        return ParsedAddr("unix", path=Path(rest))
    if not addr.startswith("tcp://"):
        return None
    rest = addr[len("tcp://") :]
    peer_id: str | None = None
    if "@" in rest:
        peer_id, rest = rest.split("@", 1)
        if _NODE_ID_RE.fullmatch(peer_id) is None:
            return None
        peer_id = peer_id.lower()
    hp = _host_port(rest)
    if hp is None:
        return None
    return ParsedAddr("tcp", host=hp[0], port=hp[1], peer_id=peer_id)


def _parse_noise_addr(rest: str) -> ParsedAddr | None:
    """`<peer-id>@host:port`: the peer ID is required (split at the last `@`, like cometbft)."""
    if "@" not in rest:
        return None
    peer_id, _, hostport = rest.rpartition("@")
    try:
        parse_peer_id(peer_id)
    except ValueError:
        return None
    hp = _host_port(hostport)
    if hp is None:
        return None
    return ParsedAddr("noise", host=hp[0], port=hp[1], peer_id=peer_id)


def noise_addr_problem(addr: str) -> str | None:
    """Why a `noise://` address is malformed, in one line (None if it is fine or not noise)."""
    if not addr.startswith("noise://") or parse_validator_addr(addr) is not None:
        return None
    rest = addr[len("noise://") :]
    if "@" not in rest:
        return (
            "noise:// needs the validator's peer ID: noise://<peer-id>@host:port"
            " (cometbft show-node-id --libp2p)"
        )
    peer_id, _, hostport = rest.rpartition("@")
    try:
        parse_peer_id(peer_id)
    except ValueError as e:
        return f"validator peer ID {peer_id!r}: {e}"
    return f"{hostport!r} is not host:port"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# =============================================================================
# Sections
# =============================================================================

_TOP_KEYS = ("chain", "validator", "providers", "hsm", "metrics", "shared_state")
_TOP_UNSUPPORTED = {
    "tx_signer": "tmkms's transaction signer is not supported by kms; remove this section",
}
_PROVIDER_KEYS = ("yubihsm", "softsign")
_PROVIDER_UNSUPPORTED = {
    "ledgertm": "the Ledger provider is not supported by kms; use yubihsm or softsign",
    "fortanixdsm": "the Fortanix DSM provider is not supported by kms; use yubihsm or softsign",
}
_CHAIN_KEYS = (
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
_VALIDATOR_KEYS = (
    "chain_id",
    "addr",
    "secret_key",
    "protocol_version",
    "reconnect",
    "timeout",
    "max_height",
)
_YUBIHSM_KEYS = ("adapter", "auth", "keys", "serial_number", "connector_server")
_SOFTSIGN_KEYS = ("chain_ids", "key_type", "key_format", "path")
_HSM_KEYS = ("policy", "health_interval", "connect_timeout", "request_timeout", "hedge")
_METRICS_KEYS = ("textfile", "listen", "interval")
_SHARED_KEYS = (
    "backend", "endpoints", "prefix", "host_id", "timeout", "auth", "tls", "insecure",
    "preference",
)  # fmt: skip

_ARRAY_OF = "an array of tables ([[{0}]] sections)"
_HEIGHT = 'a block height (a positive integer, or a decimal string such as "25000000")'
_OBJECT_ID = f"an object ID from {MIN_OBJECT_ID} to {MAX_OBJECT_ID}"
_MAX_SOFTSIGN_FILE = 64 * 1024

_KeyType = Literal["consensus", "account"]
_KEY_TYPES: tuple[_KeyType, ...] = ("consensus", "account")
_RawBytes = Literal["off", "prefixed"]
_RAW_BYTES: tuple[_RawBytes, ...] = ("off", "prefixed")
_SoftFormat = Literal["base64", "json"]
_SOFT_FORMATS: tuple[_SoftFormat, ...] = ("base64", "json")
_Policy = Literal["spread", "primary"]
_POLICIES: tuple[_Policy, ...] = ("spread", "primary")


def _is_id(text: str) -> bool:
    return _valid_chain_id(text)


class _Parser:
    """A parsed TOML document -> Config; keeps each object's table for cross-check errors."""

    def __init__(self, file: Path, check_files: bool) -> None:
        self.file = file
        self.check_files = check_files
        self.warnings: list[str] = []
        self.validator_max_height: list[int | None] = []  # by [[validator]] position

    def warn(self, t: _Table, key: str, message: str) -> None:
        self.warnings.append(f"{t.where(key)}: {message}")

    def parse(self, doc: Mapping[str, object]) -> Config:
        top = _Table(self.file, "top level", doc, _TOP_KEYS, unsupported=_TOP_UNSUPPORTED)
        chain_tables = self._sections(top, "chain", "[[chain]]", _CHAIN_KEYS)
        validator_tables = self._sections(top, "validator", "[[validator]]", _VALIDATOR_KEYS)
        providers = self._single(top, "providers", _PROVIDER_KEYS, _PROVIDER_UNSUPPORTED)
        yubihsm_tables = self._sections(
            providers, "yubihsm", "[[providers.yubihsm]]", _YUBIHSM_KEYS
        )
        softsign_tables = self._sections(
            providers, "softsign", "[[providers.softsign]]", _SOFTSIGN_KEYS
        )

        chains = [(self._chain(t), t) for t in chain_tables]
        validators = [(self._validator(t), t) for t in validator_tables]
        yubihsm = [(self._yubihsm(t), t) for t in yubihsm_tables]
        softsign = [(self._softsign(t), t) for t in softsign_tables]
        hsm = self._hsm(self._single(top, "hsm", _HSM_KEYS))
        metrics = self._metrics(self._single(top, "metrics", _METRICS_KEYS))
        shared = None
        if top.has("shared_state"):
            shared = self._shared_state(self._single(top, "shared_state", _SHARED_KEYS))

        chains = self._cross_check(chains, validators, yubihsm, softsign)
        if not chains:
            self.warn(top, "chain", "no [[chain]] sections: kms has nothing to sign")
        return Config(
            path=self.file,
            chains=tuple(c for c, _ in chains),
            validators=tuple(v for v, _ in validators),
            yubihsm=tuple(y for y, _ in yubihsm),
            softsign=tuple(s for s, _ in softsign),
            hsm=hsm,
            metrics=metrics,
            warnings=tuple(self.warnings),
            shared_state=shared,
        )

    def _sections(
        self, parent: _Table, key: str, label: str, allowed: tuple[str, ...]
    ) -> list[_Table]:
        items = parent.array(key, _ARRAY_OF.format(label.strip("[]")))
        return [
            _Table(self.file, f"{label} #{i}", item, allowed) for i, item in enumerate(items, 1)
        ]

    def _single(
        self,
        top: _Table,
        key: str,
        allowed: tuple[str, ...],
        unsupported: Mapping[str, str] | None = None,
    ) -> _Table:
        data = top.data.get(key, {})
        if not isinstance(data, dict):
            top.expected(key, f"a [{key}] table")
        return _Table(self.file, f"[{key}]", data, allowed, unsupported=unsupported)

    # --- [[chain]] -------------------------------------------------------------

    def _chain(self, t: _Table) -> ChainConfig:
        chain_id = t.text(
            "id", f"a chain ID (1 to {MAX_CHAIN_ID_LEN} printable characters)", check=_is_id
        )
        key_format = self._key_format(t)
        if t.has("state_file"):
            state_file = t.path("state_file")
        else:
            state_file = t.base / f"{chain_id}_priv_validator_state.json"
            self.warn(t, "state_file", f"not set; using {state_file} (tmkms's default name)")
        if t.has("state_hook"):
            self._state_hook(t)
        audit_log = t.optional_path("audit_log")
        if audit_log is not None and self.check_files and not audit_log.parent.is_dir():
            t.fail(
                "audit_log",
                f"directory {audit_log.parent} does not exist; create it"
                f" (mkdir -m 700 {audit_log.parent}) or change audit_log",
            )
        self._chain_key_type(t)
        return ChainConfig(
            id=chain_id,
            key_format=key_format,
            state_file=state_file,
            sign_extensions=t.boolean("sign_extensions", True),
            max_height=t.optional_integer("max_height", 1, MAX_HEIGHT, _HEIGHT, strings=True),
            audit_log=audit_log,
            raw_bytes=t.choice("raw_bytes", _RAW_BYTES, default="off"),
            shared_state=t.boolean("shared_state", True),
        )

    def _chain_key_type(self, t: _Table) -> None:
        """`key_type` of the chain's consensus key: only "ed25519" is accepted."""
        if not t.has("key_type"):
            return
        what = "ed25519 (kms signs Ed25519 consensus keys only)"
        key_type = t.text("key_type", what)
        if key_type == "ed25519":
            return
        if key_type in CONSENSUS_KEY_TYPES:
            t.fail(
                "key_type",
                f"{key_type} consensus keys are not supported: kms signs Ed25519 only"
                " (refusing to start rather than serve this chain)",
            )
        t.expected("key_type", what)

    def _key_format(self, t: _Table) -> KeyFormat:
        what = (
            'a table such as { type = "bech32", account_key_prefix = "cosmospub",'
            ' consensus_key_prefix = "cosmosvalconspub" }'
        )
        raw = t.data.get("key_format")
        if not isinstance(raw, dict):
            t.expected("key_format", what)
        kind = raw.get("type")
        if kind == "bech32":
            kf = t.sub("key_format", ("type", "account_key_prefix", "consensus_key_prefix"), what)
            prefix = "a bech32 prefix (lower-case letters and digits)"
            return KeyFormat(
                "bech32",
                kf.text("account_key_prefix", prefix, check=_is_hrp),
                kf.text("consensus_key_prefix", prefix, check=_is_hrp),
            )
        if kind in ("cosmos-json", "hex"):
            t.sub("key_format", ("type",), what)
            return KeyFormat("cosmos-json" if kind == "cosmos-json" else "hex")
        kf = _Table(self.file, t.section, raw, tuple(raw), "key_format.")
        kf.expected("type", '"bech32", "cosmos-json" or "hex"')

    def _state_hook(self, t: _Table) -> None:
        hook = t.sub(
            "state_hook", ("cmd", "timeout_secs", "fail_closed"), "a table { cmd = [...] }"
        )
        if hook.boolean("fail_closed", False):
            t.fail(
                "state_hook",
                "kms does not run state hooks and this one has fail_closed = true; carry the"
                " watermark with `kms state set` / `kms state import`, then remove state_hook",
            )
        self.warn(t, "state_hook", "ignored: kms does not run state hooks (fail_closed = false)")

    # --- [[validator]] ---------------------------------------------------------

    def _validator(self, t: _Table) -> ValidatorConfig:
        chain_id = t.text("chain_id", "a chain ID", check=_is_id)
        addr_text = t.text("addr", VALIDATOR_ADDR_FORMS)
        addr = parse_validator_addr(addr_text)
        if addr is None:
            problem = noise_addr_problem(addr_text)
            if problem is not None:
                t.fail("addr", problem)
            t.expected("addr", VALIDATOR_ADDR_FORMS)
        if addr.path is not None and len(os.fsencode(addr.path)) > MAX_UNIX_PATH:
            t.fail(
                "addr",
                f"the socket path is {len(os.fsencode(addr.path))} bytes; a unix socket path"
                f" can be at most {MAX_UNIX_PATH} bytes: use a shorter path (on the node too)",
            )
        secret_key: Path | None = t.optional_path("secret_key")
        if addr.scheme in ("tcp", "noise"):
            if secret_key is None:
                t.fail(
                    "secret_key",
                    f"missing; a {addr.scheme}:// validator needs an identity key file"
                    " (create one with `kms init`)",
                )
            if self.check_files:
                try:
                    load_identity_key(secret_key)
                except KeyFileError as e:
                    t.fail("secret_key", str(e))
        elif secret_key is not None:
            self.warn(t, "secret_key", "ignored for a unix:// validator")
            secret_key = None
        self.validator_max_height.append(
            t.optional_integer("max_height", 1, MAX_HEIGHT, _HEIGHT, strings=True)
        )
        dialect = Dialect.V0_38
        if t.has("protocol_version"):
            what = "one of " + ", ".join(f'"{d.value}"' for d in Dialect)
            version = t.text("protocol_version", what)
            if version.strip().lower() in AMINO_PROTOCOLS:
                t.fail(
                    "protocol_version",
                    f"{version!r} is an amino-era protocol (Tendermint v0.33 and older), which kms"
                    f" does not speak; expected {what} (the node's CometBFT version)",
                )
            try:
                dialect = Dialect.parse(version)
            except ValueError:
                t.expected("protocol_version", what)
        if addr.scheme == "noise" and dialect is not Dialect.V0_40:
            t.fail(
                "protocol_version",
                f"{dialect.value} with a noise:// address: noise:// is CometBFT v0.40's"
                ' transport; set protocol_version = "v0.40"',
            )
        return ValidatorConfig(
            chain_id=chain_id,
            addr=addr_text,
            scheme=addr.scheme,
            host=addr.host,
            port=addr.port,
            peer_id=addr.peer_id,
            path=addr.path,
            secret_key=secret_key,
            protocol_version=dialect,
            reconnect=t.boolean("reconnect", True),
            timeout=t.seconds("timeout", 5.0),
        )

    # --- [[providers.yubihsm]] -------------------------------------------------

    def _yubihsm(self, t: _Table) -> YubiHsmProvider:
        adapter_what = '{ type = "http", addr = "tcp://host:port" } or { type = "usb" }'
        raw = t.data.get("adapter")
        if not isinstance(raw, dict):
            t.expected("adapter", adapter_what)
        serial: str | None = None
        if t.has("serial_number"):
            serial = t.text("serial_number", "a device serial number (digits)", check=_is_serial)
        adapter: HttpAdapter | UsbAdapter
        if raw.get("type") == "http":
            a = t.sub("adapter", ("type", "addr"), adapter_what)
            where = "tcp://host:port (the yubihsm-connector address)"
            hp = _connector_addr(a.text("addr", where))
            if hp is None:
                a.expected("addr", where)
            adapter = HttpAdapter(hp[0], hp[1])
            name = f"{hp[0]}:{hp[1]}" if ":" not in hp[0] else f"[{hp[0]}]:{hp[1]}"
            if serial is not None:
                self.warn(t, "serial_number", "ignored with an http adapter (the connector picks)")
        elif raw.get("type") == "usb":
            a = t.sub("adapter", ("type", "timeout_ms", "serial_number"), adapter_what)
            if a.has("serial_number"):
                if serial is not None:
                    a.fail("serial_number", "also set as serial_number; set it once")
                serial = a.text(
                    "serial_number", "a device serial number (digits)", check=_is_serial
                )
            timeout_ms = a.optional_integer("timeout_ms", 1, 3_600_000, "milliseconds (> 0)")
            adapter = UsbAdapter(serial_number=serial, timeout_ms=timeout_ms)
            name = f"usb:{serial}" if serial else "usb"
        else:
            a = _Table(self.file, t.section, raw, tuple(raw), "adapter.")
            a.expected("type", '"http" or "usb"')

        auth = t.sub(
            "auth",
            ("key", "password_file", "password"),
            "{ key = <auth key id>, password_file = <path> }",
        )
        auth_key = auth.integer("key", MIN_OBJECT_ID, MAX_OBJECT_ID, _OBJECT_ID)
        password_file: Path | None = None
        password: str | None = None
        if auth.has("password_file") == auth.has("password"):
            auth.fail("password_file", "expected exactly one of password_file or password")
        if auth.has("password_file"):
            password_file = auth.path("password_file")
            if self.check_files:
                self._check_password_file(auth, password_file)
        else:
            password = auth.secret_text("password", "a non-empty password string (quoted)")
            self.warn(auth, "password", "password inline in the config; prefer password_file")

        keys: list[YubiHsmKey] = []
        for i, item in enumerate(t.array("keys", "a list of { chain_ids = [...], key = N }"), 1):
            k = _Table(self.file, t.section, item, ("chain_ids", "key", "type"), f"keys[{i}].")
            key_type = k.choice("type", _KEY_TYPES, default="consensus")
            if key_type == "account":
                self.warn(k, "type", "account keys are not used by kms (consensus only)")
            keys.append(
                YubiHsmKey(
                    chain_ids=k.chain_ids("chain_ids"),
                    key=k.integer("key", MIN_OBJECT_ID, MAX_OBJECT_ID, _OBJECT_ID),
                    key_type=key_type,
                )
            )
        if not keys:
            self.warn(t, "keys", "no keys listed; this device is not used")
        if t.has("connector_server"):
            t.sub("connector_server", ("laddr", "cli"), "a table { laddr = ... }")
            self.warn(t, "connector_server", "ignored: kms never listens (outbound-only zone)")
        return YubiHsmProvider(
            name=name,
            adapter=adapter,
            auth_key=auth_key,
            password_file=password_file,
            password=password,
            keys=tuple(keys),
        )

    def _check_password_file(self, auth: _Table, path: Path) -> None:
        try:
            data = read_secret_file(path)
        except KeyFileError as e:
            auth.fail("password_file", str(e))
        if not data.strip():
            auth.fail("password_file", f"{path}: file is empty; expected the auth key password")

    # --- [[providers.softsign]] ------------------------------------------------

    def _softsign(self, t: _Table) -> SoftsignProvider:
        key_type = t.choice("key_type", _KEY_TYPES, default="consensus")
        if key_type == "account":
            self.warn(t, "key_type", "account keys are not used by kms (consensus only)")
        path = t.path("path")
        if self.check_files:
            try:
                read_secret_file(path, max_len=_MAX_SOFTSIGN_FILE)
            except KeyFileError as e:
                t.fail("path", str(e))
        return SoftsignProvider(
            chain_ids=t.chain_ids("chain_ids"),
            key_type=key_type,
            key_format=t.choice("key_format", _SOFT_FORMATS, default="base64"),
            path=path,
        )

    # --- [hsm], [metrics] -------------------------------------------------------

    def _hsm(self, t: _Table) -> HsmPolicy:
        d = HsmPolicy()
        policy = HsmPolicy(
            policy=t.choice("policy", _POLICIES, default=d.policy),
            health_interval=t.seconds("health_interval", d.health_interval),
            connect_timeout=t.seconds("connect_timeout", d.connect_timeout),
            request_timeout=t.seconds("request_timeout", d.request_timeout),
            hedge=t.boolean("hedge", d.hedge),
        )
        if policy.health_interval >= HSM_SESSION_IDLE_LIMIT:
            self.warn(
                t,
                "health_interval",
                f"{policy.health_interval:g} s is not below the device's"
                f" {HSM_SESSION_IDLE_LIMIT:g} s session idle limit; idle sessions will expire",
            )
        return policy

    def _metrics(self, t: _Table) -> MetricsConfig:
        listen: tuple[str, int] | None = None
        if t.has("listen"):
            what = "a loopback host:port such as 127.0.0.1:9464 (the zone is outbound-only)"
            hp = _host_port(t.text("listen", what))
            if hp is None or not _is_loopback(hp[0]):
                t.expected("listen", what)
            listen = hp
        return MetricsConfig(
            textfile=t.optional_path("textfile"),
            listen=listen,
            interval=t.seconds("interval", MetricsConfig().interval),
        )

    # --- [shared_state] (NEW) ---------------------------------------------------------

    def _shared_state(self, t: _Table) -> SharedStateConfig:
        t.choice("backend", ("etcd",), default="etcd")
        insecure = t.boolean("insecure", False)
        what = 'a non-empty list of etcd URLs such as ["https://10.0.0.1:2379"]'
        raw = t.data.get("endpoints")
        if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
            t.expected("endpoints", what)
        for e in raw:
            scheme, sep, rest = e.partition("://")
            if not sep or scheme not in ("http", "https") or _host_port(rest.rstrip("/")) is None:
                t.fail("endpoints", f"expected {what}, got {e!r} in the list")
            if scheme == "http" and not insecure:
                t.fail(
                    "endpoints",
                    f"{e!r} is plain http: the watermark would travel unauthenticated;"
                    " use https:// (and tls), or set insecure = true for a loopback test",
                )
        prefix = t.text(
            "prefix", 'an etcd key prefix such as "/kms/prod"',
            check=lambda p: p.startswith("/") and p.isascii() and p.isprintable() and p != "/",
        )  # fmt: skip
        timeout = _duration(t, "timeout", 1.0)
        username = password_file = None
        if t.has("auth"):
            a = t.sub("auth", ("username", "password_file"), "{ username, password_file }")
            username = a.text("username", "an etcd user name")
            password_file = a.path("password_file")
            if self.check_files:
                self._check_password_file(a, password_file)
        ca = cert = key = None
        if t.has("tls"):
            tt = t.sub(
                "tls", ("ca_file", "cert_file", "key_file"), "{ ca_file, cert_file, key_file }"
            )
            ca, cert, key = (tt.optional_path(k) for k in ("ca_file", "cert_file", "key_file"))
            if (cert is None) != (key is None):
                tt.fail("cert_file", "cert_file and key_file go together (a client certificate)")
        pref_ttl, pref_delay = None, DEFAULT_PREFERENCE_DELAY
        if t.has("preference"):
            p = t.sub("preference", ("ttl", "delay"), '{ ttl = 3, delay = "200ms" }')
            pref_ttl = p.integer("ttl", 1, 3600, "a lease TTL in whole seconds (1..3600)")
            pref_delay = _duration(p, "delay", pref_delay)
        return SharedStateConfig(
            preference_ttl=pref_ttl,
            preference_delay=pref_delay,
            endpoints=tuple(raw),
            prefix=prefix.rstrip("/"),
            host_id=t.text("host_id", "a host name for the records", default=socket.gethostname()),
            timeout=timeout,
            username=username,
            password_file=password_file,
            ca_file=ca,
            cert_file=cert,
            key_file=key,
            insecure=insecure,
        )

    # --- cross-checks ------------------------------------------------------------

    def _cross_check(
        self,
        chains: list[tuple[ChainConfig, _Table]],
        validators: list[tuple[ValidatorConfig, _Table]],
        yubihsm: list[tuple[YubiHsmProvider, _Table]],
        softsign: list[tuple[SoftsignProvider, _Table]],
    ) -> list[tuple[ChainConfig, _Table]]:
        known: dict[str, _Table] = {}
        for c, t in chains:
            if c.id in known:
                t.fail("id", f"chain {c.id!r} is already defined in {known[c.id].section}")
            known[c.id] = t

        seen_addr: dict[str, str] = {}
        for v, t in validators:
            if v.chain_id not in known:
                t.fail("chain_id", f"no [[chain]] has id = {v.chain_id!r}")
            if v.addr in seen_addr:
                t.fail("addr", f"{v.addr!r} is already used by {seen_addr[v.addr]}")
            seen_addr[v.addr] = t.section

        soft_for: dict[str, str] = {}
        for s, t in softsign:
            for cid in s.chain_ids:
                if cid not in known:
                    t.fail("chain_ids", f"no [[chain]] has id = {cid!r}")
                if s.key_type != "consensus":
                    continue
                if cid in soft_for:
                    t.fail(
                        "chain_ids", f"chain {cid!r} already has a softsign key in {soft_for[cid]}"
                    )
                soft_for[cid] = t.section

        hsm_for: dict[str, str] = {}
        devices: dict[str, str] = {}
        for y, t in yubihsm:
            if y.name in devices:
                t.fail("adapter", f"device {y.name} is already configured in {devices[y.name]}")
            devices[y.name] = t.section
            on_device: dict[str, int] = {}
            for i, k in enumerate(y.keys, 1):
                for cid in k.chain_ids:
                    where = f"keys[{i}].chain_ids"
                    if cid not in known:
                        t.fail(where, f"no [[chain]] has id = {cid!r}")
                    if k.key_type != "consensus":
                        continue
                    if cid in on_device and on_device[cid] != k.key:
                        t.fail(
                            where, f"chain {cid!r} already uses key {on_device[cid]} on this device"
                        )
                    if cid in soft_for:
                        mixed = (
                            f"chain {cid!r} also has a softsign key in {soft_for[cid]};"
                            " use one kind of key per chain"
                        )
                        if self.check_files:  # ready to run: which key signs must be clear
                            t.fail(where, mixed)
                        self.warn(t, where, mixed + " (`kms start` refuses this)")
                    on_device[cid] = k.key
                    hsm_for.setdefault(cid, t.section)

        served = {v.chain_id for v, _ in validators}
        out: list[tuple[ChainConfig, _Table]] = []
        for c, t in chains:
            if c.id not in soft_for and c.id not in hsm_for:
                fix = (
                    "add a [[providers.yubihsm]] key or a [[providers.softsign]] with this chain"
                    " in chain_ids"
                )
                if c.id in served:
                    t.fail("id", f"no consensus key serves chain {c.id!r}; {fix}")
                # tmkms allows spare chains: no key and no validator is harmless
                self.warn(t, "id", f"no consensus key serves chain {c.id!r}; it is ignored ({fix})")
                continue
            if c.id not in served:
                self.warn(t, "id", f"no [[validator]] serves chain {c.id!r}; it will not sign")
            caps = [c.max_height] if c.max_height is not None else []
            for (v, vt), vmax in zip(validators, self.validator_max_height, strict=True):
                if v.chain_id == c.id and vmax is not None:
                    caps.append(vmax)
                    self.warn(vt, "max_height", f"applies to the whole chain {c.id!r} in kms")
            if caps and min(caps) != c.max_height:
                c = dataclasses.replace(c, max_height=min(caps))
            out.append((c, t))
        return out


def _duration(t: _Table, key: str, default: float) -> float:
    """Seconds as a number, or a string such as "1s", "500ms"."""
    value = t.data.get(key, default)
    if isinstance(value, str):
        m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s)", value.strip())
        if m is None or float(m[1]) <= 0:
            t.expected(key, 'a duration such as "1s" or "500ms", or a number of seconds')
        return float(m[1]) / (1000 if m[2] == "ms" else 1)
    return t.seconds(key, default)


def _is_hrp(text: str) -> bool:
    return re.fullmatch(r"[a-z0-9]{1,83}", text) is not None


def _is_serial(text: str) -> bool:
    return re.fullmatch(r"[0-9]{1,10}", text) is not None


def _connector_addr(text: str) -> tuple[str, int] | None:
    for scheme in ("tcp://", "http://"):
        if text.startswith(scheme):
            return _host_port(text[len(scheme) :].rstrip("/"))
    return None
