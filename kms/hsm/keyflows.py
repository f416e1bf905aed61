"""Key administration flows over replica devices: keygen, import, export, and the devices they use.

Owns: which devices a key command works on (every `[[providers.yubihsm]]`
section of a config, only those whose `keys` list the key id when any does, or
`--connector` addresses with one auth key for all), connecting and
authenticating all of them first, and the keygen / import / export flows with
their rules. Never parses arguments or prints (kms/cli/keys.py), never signs,
never touches double-sign state or validator connections.

Rules:
- Check everything first, then write: every device is reached and
  authenticated, the key id is checked (absent, or `force`), the wrap key is
  checked on every device that needs it, and output files are checked to be
  new, BEFORE the first change. A flow that fails a check changes nothing.
  (A device that dies in the middle of the write phase can still leave some
  devices with the key and others without; the message then lists which.)
- Keygen creates the key on the first device as exportable-under-wrap (unless
  not `exportable`, which forbids replicas and backups) and clones it to the
  others with EXPORT_WRAPPED / IMPORT_WRAPPED under the wrap key (default 1:
  tmkms's convention for the wrap key, which must already exist on every
  device, e.g. from the same `yubihsm-setup`).
- After every write, every device's public key is read back and compared.
- A tmkms / yubihsm-shell wrap blob goes into one device first, whose public
  key is shown, then into the others.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from yubihsm.defs import ERROR, OBJECT

from kms.config import Config, KeyFormat
from kms.errors import HsmDeviceError, KeyCommandError, KmsError
from kms.hsm.backup import RawWrapped, tmkms_file
from kms.hsm.devices import CONNECT_TIMEOUT, REQUEST_TIMEOUT
from kms.hsm.keyadmin import (
    SIGN_CAPS,
    delete_key,
    export_wrapped,
    generate_ed25519,
    import_wrapped,
    put_ed25519,
    wrap_key_exists,
)
from kms.hsm.keyfiles import SeedSource, WrappedBackup, check_new_file
from kms.hsm.roles import VALIDATOR_KEY_CAPS
from kms.keyfile import write_secret_file
from kms.signer.factory import provider_connector, provider_password, read_password_file
from kms.signer.yubihsm import KeyInfo, find_key
from kms.signer.yubihsm_session import (
    Connector,
    DeviceSession,
    connector_name,
    derive_credentials,
    device_error_code,
)

T = TypeVar("T")

DEFAULT_LABEL = "validator"
DEFAULT_DOMAINS = 1


# --- devices -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device addressed by a key command."""

    name: str
    connector: Connector
    auth_key_id: int
    password: Callable[[], str] = field(repr=False)
    key_formats: dict[int, KeyFormat] = field(default_factory=dict)  # key id -> chain format
    key_chains: dict[int, tuple[str, ...]] = field(default_factory=dict)


def specs_from_config(config: Config) -> list[DeviceSpec]:
    out: list[DeviceSpec] = []
    chains = {c.id: c for c in config.chains}
    for p in config.yubihsm:
        formats: dict[int, KeyFormat] = {}
        owners: dict[int, tuple[str, ...]] = {}
        for k in p.keys:
            owners[k.key] = owners.get(k.key, ()) + k.chain_ids
            for cid in k.chain_ids:
                if cid in chains and k.key not in formats:
                    formats[k.key] = chains[cid].key_format
        out.append(
            DeviceSpec(
                p.name,
                provider_connector(p),
                p.auth_key,
                functools.partial(provider_password, p, read_password_file),
                formats,
                owners,
            )
        )
    return out


def specs_for_key(specs: list[DeviceSpec], key_id: int) -> list[DeviceSpec]:
    """The devices a key command works on: those configured with the key, else all."""
    holding = [s for s in specs if key_id in s.key_chains]
    return holding or specs


def specs_from_flags(
    connectors: Sequence[Connector], auth_key: int, password: Callable[[], str]
) -> list[DeviceSpec]:
    """One device per `--connector`, all with one auth key; `password` is asked once, when
    the first device is connected."""
    once = functools.cache(password)
    specs = [DeviceSpec(connector_name(c), c, auth_key, once) for c in connectors]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise KeyCommandError(f"the same connector is given twice: {names}")
    return specs


def with_auth(
    specs: Sequence[DeviceSpec], auth_key: int, password: Callable[[], str]
) -> list[DeviceSpec]:
    """The same devices as another role than the config's (e.g. the operator after
    `kms hsm setup`)."""
    return [replace(s, auth_key_id=auth_key, password=password) for s in specs]


def key_format_for(devices: Sequence[Device], key_id: int | None) -> KeyFormat | None:
    """The public key format of the chain a config gives the key, if any."""
    for d in devices:
        if key_id is not None and key_id in d.spec.key_formats:
            return d.spec.key_formats[key_id]
    return None


class Device:
    """A connected, authenticated device (synchronous; the CLI has one thread)."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        creds = derive_credentials(spec.auth_key_id, spec.password())
        self.session = DeviceSession(
            spec.name,
            spec.connector,
            creds,
            connect_timeout=CONNECT_TIMEOUT,
            request_timeout=REQUEST_TIMEOUT,
        )

    def call(self, fn: Callable[[Any], T], what: str = "") -> T:
        return self.session.call(fn, what)

    def find(self, key_id: int) -> KeyInfo | None:
        return self.call(lambda s: find_key(s, key_id), f": key {key_id}")

    def close(self) -> None:
        self.session.close()


@contextmanager
def connected(specs: Sequence[DeviceSpec]) -> Iterator[list[Device]]:
    """Connect and authenticate every device first (a cheap read proves the session)."""
    if not specs:
        raise KeyCommandError("no devices: give -c CONFIG or --connector URL")
    devices: list[Device] = []
    try:
        for spec in specs:
            dev = Device(spec)
            devices.append(dev)
            dev.call(lambda s: s.list_objects(object_id=0xFFFF), ": connect")
        yield devices
    finally:
        for d in devices:
            d.close()


# --- flows ---------------------------------------------------------------------------


def _agree(devices: Sequence[Device], key_id: int, expected: bytes | None) -> bytes:
    keys = {d.name: d.find(key_id) for d in devices}
    found = {n: (k.public_key if k else None) for n, k in keys.items()}
    want = expected if expected is not None else next(iter(found.values()))
    bad = {n: pk for n, pk in found.items() if pk is None or pk != want}
    if want is None or bad:
        detail = ", ".join(f"{n}: {pk.hex() if pk else 'missing'}" for n, pk in found.items())
        raise KeyCommandError(f"key {key_id}: devices disagree after writing ({detail})")
    return want


def _check_absent(devices: Sequence[Device], key_id: int) -> None:
    present = [d.name for d in devices if d.find(key_id) is not None]
    if present:
        raise KeyCommandError(
            f"key id {key_id} already exists on {', '.join(present)}; nothing was changed"
        )


def _check_wrap_key(devices: Sequence[Device], wrap_key_id: int) -> None:
    missing = [
        d.name
        for d in devices
        if not d.call(lambda s: wrap_key_exists(s, wrap_key_id), f": wrap key {wrap_key_id}")
    ]
    if missing:
        raise KeyCommandError(
            f"wrap key {wrap_key_id} not found on {', '.join(missing)} "
            "(give --wrap-key-id, or put the same wrap key on every device); nothing was changed"
        )


def _partial(devices: Sequence[Device], key_id: int, done: list[str], err: Exception) -> NoReturn:
    if not done:
        raise KeyCommandError(f"{err}; nothing was changed") from err
    others = [d.name for d in devices if d.name not in done]
    raise KeyCommandError(
        f"{err}; key {key_id} is now on: {', '.join(done)}; NOT on: {', '.join(others)}"
    ) from err


def keygen_flow(
    devices: Sequence[Device],
    key_id: int,
    *,
    label: str,
    domains: int,
    exportable: bool,
    wrap_key_id: int,
    backup: Path | None,
) -> bytes:
    clone = len(devices) > 1
    if not exportable and (clone or backup):
        raise KeyCommandError(
            "--non-exportable keys cannot be cloned to replicas or backed up; "
            "use one device, or import the same seed into each (kms import)"
        )
    if backup is not None:
        check_new_file(backup)
    _check_absent(devices, key_id)
    if clone or backup:
        _check_wrap_key(devices, wrap_key_id)

    caps = VALIDATOR_KEY_CAPS if exportable else SIGN_CAPS
    first, rest = devices[0], devices[1:]
    done: list[str] = []
    try:
        first.call(lambda s: generate_ed25519(s, key_id, label, domains, caps), ": generate")
        done.append(first.name)
        blob = b""
        if clone or backup:
            blob = first.call(lambda s: export_wrapped(s, wrap_key_id, key_id), ": export")
        for d in rest:
            _import_blob(d, wrap_key_id, blob, key_id)
            done.append(d.name)
    except KmsError as e:
        _partial(devices, key_id, done, e)
    public_key = _agree(devices, key_id, None)
    if backup is not None:
        write_secret_file(backup, WrappedBackup(key_id, wrap_key_id, public_key, blob).to_json())
    return public_key


def _import_blob(d: Device, wrap_key_id: int, blob: bytes, key_id: int) -> None:
    try:
        obj_type, obj_id = d.call(lambda s: import_wrapped(s, wrap_key_id, blob), ": import")
    except HsmDeviceError as e:
        if device_error_code(e) == ERROR.INVALID_DATA:
            raise KeyCommandError(
                f"{e} (the blob does not decrypt under wrap key {wrap_key_id} on {d.name}: "
                "a different wrap key, or a corrupt backup)"
            ) from e
        raise
    if (obj_type, obj_id) != (OBJECT.ASYMMETRIC_KEY, key_id):
        raise KeyCommandError(
            f"{d.name}: wrapped blob held object {obj_id} (type {obj_type}), expected key {key_id}"
        )


def import_flow(
    devices: Sequence[Device],
    key_id: int,
    source: SeedSource | WrappedBackup,
    *,
    label: str,
    domains: int,
    exportable: bool,
    force: bool,
) -> bytes:
    expected = source.public_key
    if isinstance(source, WrappedBackup) and source.key_id != key_id:
        raise KeyCommandError(
            f"the backup holds key id {source.key_id}, not {key_id} (a wrapped key keeps its id)"
        )
    existing = {d.name: d.find(key_id) for d in devices}
    todo = [d for d in devices if (k := existing[d.name]) is None or k.public_key != expected]
    clash = [d.name for d in todo if existing[d.name] is not None]
    if clash and not force:
        raise KeyCommandError(
            f"key id {key_id} already exists on {', '.join(clash)} with another key; "
            "use --force to replace it; nothing was changed"
        )
    if isinstance(source, WrappedBackup):
        _check_wrap_key(todo, source.wrap_key_id)
    caps = VALIDATOR_KEY_CAPS if exportable else SIGN_CAPS
    done = [d.name for d in devices if d not in todo]
    try:
        for d in todo:
            if existing[d.name] is not None:
                d.call(lambda s: delete_key(s, key_id), ": delete")
            if isinstance(source, WrappedBackup):
                _import_blob(d, source.wrap_key_id, source.blob, key_id)
            else:
                _put_seed(d, key_id, label, domains, caps, source.seed)
            done.append(d.name)
    except KmsError as e:
        _partial(devices, key_id, done, e)
    return _agree(devices, key_id, expected)


def raw_import_flow(
    devices: Sequence[Device],
    key_id: int,
    source: RawWrapped,
    wrap_key_id: int,
    *,
    force: bool,
    show: Callable[[bytes], None],
) -> bytes:
    """Import a tmkms / yubihsm-shell blob: its key is only readable once a device holds it,
    so it goes into ONE device first, its public key is shown, then into the others."""
    existing = {d.name: d.find(key_id) for d in devices}
    present = [n for n, k in existing.items() if k is not None]
    if present and not force:
        raise KeyCommandError(
            f"key id {key_id} already exists on {', '.join(present)}; a wrapped key keeps its"
            " id: use --force to replace it; nothing was changed"
        )
    _check_wrap_key(devices, wrap_key_id)
    done: list[str] = []
    expected: bytes | None = None
    try:
        for d in devices:
            if existing[d.name] is not None:
                d.call(lambda s: delete_key(s, key_id), ": delete")
            _import_blob(d, wrap_key_id, source.blob, key_id)
            done.append(d.name)
            info = d.find(key_id)
            if info is None or info.public_key is None:
                raise KeyCommandError(f"{d.name}: imported key {key_id} is not an Ed25519 key")
            if expected is None:
                expected = info.public_key
                show(expected)  # before the blob goes into any other replica
    except KmsError as e:
        _partial(devices, key_id, done, e)
    return _agree(devices, key_id, expected)


def _put_seed(d: Device, key_id: int, label: str, domains: int, caps: int, seed: bytes) -> None:
    d.call(lambda s: put_ed25519(s, key_id, label, domains, caps, seed), ": put")


def export_flow(
    devices: Sequence[Device], key_id: int, wrap_key_id: int, out: Path, *, tmkms: bool = False
) -> bytes:
    check_new_file(out)
    holder = next(((d, k) for d in devices if (k := d.find(key_id)) is not None), None)
    if holder is None:
        raise KeyCommandError(f"key id {key_id} not found on any device")
    dev, info = holder
    if info.public_key is None:
        raise KeyCommandError(f"{dev.name}: key {key_id} is {info.algorithm}, not Ed25519")
    if not dev.call(lambda s: wrap_key_exists(s, wrap_key_id), ": wrap key"):
        raise KeyCommandError(f"{dev.name}: wrap key {wrap_key_id} not found")
    blob = dev.call(lambda s: export_wrapped(s, wrap_key_id, key_id), ": export")
    backup = WrappedBackup(key_id, wrap_key_id, info.public_key, blob)
    write_secret_file(out, tmkms_file(blob) if tmkms else backup.to_json())
    return info.public_key
