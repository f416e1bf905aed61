"""Build each chain's signer from the configuration.

Owns: turning `Config` into `{chain_id: Signer}`: a `SoftSigner` for a
`[[providers.softsign]]` consensus key, or a `ReplicaSet` of the
`YubiHsmSigner`s of every `[[providers.yubihsm]]` section holding a consensus
key for that chain, in config order, with `[hsm]` policy and timeouts. Each
device gets ONE `YubiHsmDevice` (one session, one thread) however many chains
it serves; each distinct password is derived once. Nothing is opened here:
the caller (daemon) calls `open()` on each signer, which checks keys and
replica agreement. Never touches state or sockets.

Account keys (`key_type = "account"`) are not consensus signers and are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kms.config import Config, UsbAdapter, YubiHsmProvider
from kms.errors import ConfigError, KeyFileError
from kms.keyfile import read_secret_file
from kms.signer.base import Signer
from kms.signer.hedge import HedgePolicy
from kms.signer.replicas import ReplicaSet
from kms.signer.softsign import load_softsign
from kms.signer.yubihsm import YubiHsmDevice, YubiHsmSigner
from kms.signer.yubihsm_session import (
    Connector,
    Credentials,
    HttpConnector,
    UsbConnector,
    check_distinct_devices,
    derive_credentials,
)


def read_password_file(path: Path) -> str:
    """A password file: mode 0600, UTF-8, one line (a trailing newline is ignored)."""
    raw = read_secret_file(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: password file is not UTF-8") from None
    password = text.rstrip("\r\n")
    if not password:
        raise KeyFileError(f"{path}: password file is empty")
    return password


def provider_password(p: YubiHsmProvider, reader: Callable[[Path], str]) -> str:
    if p.password_file is not None:
        return reader(p.password_file)
    if p.password is not None:
        return p.password
    raise ConfigError(f"[[providers.yubihsm]] {p.name}: auth needs password_file (or password)")


def provider_connector(p: YubiHsmProvider) -> Connector:
    if p.adapter.type == "http":
        return HttpConnector(p.adapter.url)
    assert isinstance(p.adapter, UsbAdapter)
    serial = p.adapter.serial_number
    return UsbConnector(int(serial) if serial else None)


def build_signers(
    config: Config,
    *,
    password_reader: Callable[[Path], str] = read_password_file,
    derive: Callable[[int, str], Credentials] = derive_credentials,
) -> dict[str, Signer]:
    """Chain id -> signer, for every chain with a consensus key in the config."""
    signers: dict[str, Signer] = {}

    def claim(chain_id: str, what: str) -> None:
        if chain_id in signers:
            raise ConfigError(f"{config.path}: chain {chain_id!r} has two key providers ({what})")

    for sp in config.softsign:
        if sp.key_type != "consensus":
            continue
        soft = load_softsign(sp.path, sp.key_format)
        for chain_id in sp.chain_ids:
            claim(chain_id, f"softsign {sp.path}")
            signers[chain_id] = soft

    hsm = config.hsm
    check_distinct_devices(
        {p.name: provider_connector(p) for p in config.yubihsm if p.keys},
        hsm.connect_timeout,
        hsm.request_timeout,
    )
    replicas: dict[str, list[Signer]] = {}
    for p in config.yubihsm:
        wanted = [k for k in p.keys if k.key_type == "consensus"]
        if not wanted:
            continue
        device = YubiHsmDevice(
            p.name,
            provider_connector(p),
            derive(p.auth_key, provider_password(p, password_reader)),
            connect_timeout=hsm.connect_timeout,
            request_timeout=hsm.request_timeout,
        )
        for k in wanted:
            for chain_id in k.chain_ids:
                if chain_id in signers:
                    claim(chain_id, f"yubihsm {p.name}")
                replicas.setdefault(chain_id, []).append(YubiHsmSigner(device, k.key, name=p.name))

    for chain_id, members in replicas.items():
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"{config.path}: chain {chain_id!r} lists the same device twice ({names})"
            )
        signers[chain_id] = ReplicaSet(
            chain_id,
            members,
            policy=hsm.policy,
            health_interval=hsm.health_interval,
            probe_timeout=hsm.connect_timeout + hsm.request_timeout,
            hedge=HedgePolicy(enabled=hsm.hedge),
        )
    return signers
