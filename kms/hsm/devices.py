"""Which devices an administration command works on, and how it reaches them.

Owns: the list of target devices from a config (every `[[providers.yubihsm]]`
section: one replica each) or from `--connector` flags, a plaintext read of a
device's DEVICE_INFO (serial, firmware, log fill), an authenticated session as
a given auth key, and the duplicate-serial rule (two addresses that reach one
device are one replica, not two). Never decides what to write.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from yubihsm.core import YubiHsm

from kms.config import Config
from kms.errors import HsmAdminError
from kms.signer.factory import provider_connector, provider_password, read_password_file
from kms.signer.yubihsm_session import (
    Connector,
    DeviceSession,
    connector_name,
    derive_credentials,
    make_backend,
    map_error,
    parse_connector,
)

# administration commands: key generation on a real device can take a while
CONNECT_TIMEOUT = 2.0
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    """One device: where it is, and (from a config) the validator keys it should hold."""

    name: str
    connector: Connector
    key_ids: tuple[int, ...] = ()
    auth_key: int | None = None  # the config's auth key (what `kms start` uses)
    password: Callable[[], str] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    serial: int
    firmware: str
    log_total: int
    log_used: int


def targets_from_config(config: Config) -> list[Target]:
    out = []
    for p in config.yubihsm:
        out.append(
            Target(
                p.name,
                provider_connector(p),
                tuple(k.key for k in p.keys),
                p.auth_key,
                functools.partial(provider_password, p, read_password_file),
            )
        )
    return out


def targets_from_flags(
    connectors: Sequence[str],
    auth_key: int | None = None,
    password: Callable[[], str] | None = None,
) -> list[Target]:
    out = []
    for text in connectors:
        try:
            conn = parse_connector(text)
        except ValueError as e:
            raise HsmAdminError(str(e)) from None
        out.append(Target(connector_name(conn), conn, (), auth_key, password))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise HsmAdminError(f"the same connector is given twice: {', '.join(names)}")
    return out


def with_auth(
    targets: Sequence[Target], auth_key: int, password: Callable[[], str]
) -> list[Target]:
    """The same devices, reached as another auth key than the config's."""
    return [Target(t.name, t.connector, t.key_ids, auth_key, password) for t in targets]


def device_facts(target: Target) -> DeviceFacts:
    """DEVICE_INFO in plaintext (no session, no password)."""
    try:
        hsm = YubiHsm(make_backend(target.connector, CONNECT_TIMEOUT, REQUEST_TIMEOUT))
        try:
            info = hsm.get_device_info()
        finally:
            hsm.close()
    except Exception as e:
        raise map_error(e, target.name) from e
    return DeviceFacts(
        info.serial, ".".join(str(v) for v in info.version), info.log_size, info.log_used
    )


def open_session(target: Target, auth_key_id: int, password: str) -> DeviceSession:
    return DeviceSession(
        target.name,
        target.connector,
        derive_credentials(auth_key_id, password),
        connect_timeout=CONNECT_TIMEOUT,
        request_timeout=REQUEST_TIMEOUT,
        auth_hold_off=0.0,
    )


def duplicate_serials(serials: dict[str, int]) -> list[str]:
    """One message per serial reached under more than one name (address)."""
    by_serial: dict[int, list[str]] = {}
    for name, serial in serials.items():
        by_serial.setdefault(serial, []).append(name)
    return [
        f"{' and '.join(names)} are the same device (serial {serial}); list each device once"
        for serial, names in sorted(by_serial.items())
        if len(names) > 1
    ]


def strip_name(exc: BaseException, name: str) -> str:
    """An error's text without the leading device name (printed once, by the caller)."""
    text = str(exc)
    return text[len(name) :].lstrip(" :") if text.startswith(name) else text
