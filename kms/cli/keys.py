"""`kms keygen`, `kms import`, `kms export`, `kms keys list`: consensus keys in YubiHSM2s and files.

Owns: the key-administration flows (create, clone, import, back up, inspect)
over one or more replica devices, and their command-line surface. Never
touches double-sign state or validator connections.

Devices come from a config (`-c`: every `[[providers.yubihsm]]` section; for
keygen/import/export only the sections whose `keys` list the key id, or all
sections when none does) or from flags (`--connector URL` repeated, one auth
key id and password for all). With `-c`, `--auth-key` + `--password-file`
replace the config's auth key (e.g. the operator role after `kms hsm setup`). Passwords come from files (mode 0600) or a
prompt, never from arguments.

Rules:
- Check everything first, then write: every device is reached and
  authenticated, the key id is checked (absent, or `--force`), the wrap key is
  checked on every device that needs it, and output files are checked to be
  new, BEFORE the first change. A command that fails a check changes nothing.
  (A device that dies in the middle of the write phase can still leave some
  devices with the key and others without; the message then lists which.)
- Keygen creates the key on the first device as exportable-under-wrap (unless
  `--non-exportable`, which forbids replicas and backups) and clones it to the
  others with EXPORT_WRAPPED / IMPORT_WRAPPED under the wrap key
  (`--wrap-key-id`, default 1: tmkms's convention for the wrap key, which must
  already exist on every device, e.g. from the same `yubihsm-setup`).
- After every write, every device's public key is read back and compared.
- `kms import` also takes the bare wrap blob tmkms and yubihsm-shell write
  (kms/hsm/backup.py); it goes into one device first, whose public key is
  shown, then into the others. `kms export --format tmkms` writes that form.
- A wrapped backup is a small JSON document (0600): format, key id, wrap key
  id, public key and the device's wrap blob in base64. The key id and public
  key are recorded because the blob itself is encrypted and cannot be checked
  before import. `kms import` accepts it, a CometBFT `priv_validator_key.json`
  or a base64 seed (32 bytes, or 64 = seed || public key).
- `kms keys list` exits 1 when a device is unreachable, misses a configured
  key, or replicas of a key disagree (the listing is still printed).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from yubihsm.defs import ERROR

from kms.chains import public_key_forms, render_forms
from kms.cli.errors import EXIT_REFUSED
from kms.config import Config, KeyFormat, load_config
from kms.errors import (
    ConfigError,
    HsmConnectionError,
    HsmDeviceError,
    HsmTimeoutError,
    KeyCommandError,
    KmsError,
)
from kms.hsm.backup import RawWrapped, detect_raw_wrapped, tmkms_file
from kms.hsm.devices import strip_name
from kms.hsm.keyadmin import (
    EXPORTABLE_CAPS,
    SIGN_CAPS,
    delete_key,
    export_wrapped,
    generate_ed25519,
    import_wrapped,
    list_asymmetric_keys,
    put_ed25519,
    wrap_key_exists,
)
from kms.keys import (
    check_private_mode,
    decode_base64_key,
    format_public_key,
    generate_seed,
    parse_priv_validator_key,
    public_key_from_seed,
    validator_address,
    write_base64_seed,
    write_secret_file,
)
from kms.signer.factory import provider_connector, provider_password, read_password_file
from kms.signer.yubihsm import KeyInfo, find_key
from kms.signer.yubihsm_session import (
    Connector,
    DeviceSession,
    connector_name,
    derive_credentials,
    device_error_code,
    parse_connector,
)

T = TypeVar("T")

WRAPPED_FORMAT = "kms-wrapped-v1"
DEFAULT_WRAP_KEY_ID = 1
DEFAULT_LABEL = "validator"
DEFAULT_DOMAINS = 1
OBJECT_TYPE_ASYMMETRIC = 3
CONNECT_TIMEOUT = 2.0
REQUEST_TIMEOUT = 10.0  # key generation on a real device can take a while


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
    connectors: Sequence[str], auth_key: int, password_file: Path | None
) -> list[DeviceSpec]:
    cached: list[str] = []

    def password() -> str:
        if not cached:
            if password_file is not None:
                cached.append(read_password_file(password_file))
            else:
                cached.append(click.prompt(f"Password for auth key {auth_key}", hide_input=True))
        return cached[0]

    specs = []
    for text in connectors:
        try:
            conn = parse_connector(text)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--connector'") from None
        specs.append(DeviceSpec(connector_name(conn), conn, auth_key, password))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise KeyCommandError(f"the same connector is given twice: {names}")
    return specs


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


# --- backup files --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrappedBackup:
    key_id: int
    wrap_key_id: int
    public_key: bytes
    blob: bytes

    def to_json(self) -> bytes:
        doc = {
            "format": WRAPPED_FORMAT,
            "key_id": self.key_id,
            "wrap_key_id": self.wrap_key_id,
            "public_key": base64.b64encode(self.public_key).decode(),
            "address": validator_address(self.public_key),
            "wrapped": base64.b64encode(self.blob).decode(),
        }
        return (json.dumps(doc, indent=2) + "\n").encode()


def parse_wrapped_backup(path: Path, doc: dict[str, Any]) -> WrappedBackup:
    try:
        key_id, wrap_id = int(doc["key_id"]), int(doc["wrap_key_id"])
        public_key = base64.b64decode(doc["public_key"], validate=True)
        blob = base64.b64decode(doc["wrapped"], validate=True)
    except (KeyError, ValueError, TypeError, binascii.Error):
        raise KeyCommandError(f"{path}: malformed {WRAPPED_FORMAT} backup") from None
    if len(public_key) != 32 or len(blob) < 13 + 16 + 59:
        raise KeyCommandError(f"{path}: malformed {WRAPPED_FORMAT} backup (bad lengths)")
    return WrappedBackup(key_id, wrap_id, public_key, blob)


@dataclass(frozen=True, slots=True)
class SeedSource:
    seed: bytes

    @property
    def public_key(self) -> bytes:
        return public_key_from_seed(self.seed)


KeySource = SeedSource | WrappedBackup | RawWrapped


def read_key_source(path: Path) -> KeySource:
    """A priv_validator_key.json, a base64 seed file, a kms wrapped backup, or a raw wrap
    blob as tmkms (`yubihsm keys export`) and yubihsm-shell (`get-wrapped`) write it."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise KeyCommandError(f"{path}: cannot read: {e.strerror or e}") from None
    doc: Any = None
    if raw.lstrip().startswith(b"{"):
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise KeyCommandError(f"{path}: not valid JSON ({e})") from None
    if isinstance(doc, dict) and doc.get("format") == WRAPPED_FORMAT:
        return parse_wrapped_backup(path, doc)
    if doc is None and (wrapped := detect_raw_wrapped(raw)) is not None:
        return wrapped  # encrypted under the wrap key: no clear secret, no mode check
    check_private_mode(path)  # everything else holds the secret in the clear
    if doc is not None:
        return SeedSource(parse_priv_validator_key(path, raw).seed)
    key = decode_base64_key(path, raw)
    if len(key) == 32:
        return SeedSource(key)
    if len(key) == 64 and public_key_from_seed(key[:32]) == key[32:]:
        return SeedSource(key[:32])
    raise KeyCommandError(
        f"{path}: decoded key is {len(key)} bytes; a device import needs a 32-byte seed "
        "(or 64 bytes seed || public key), a priv_validator_key.json or a wrapped backup"
    )


def check_new_file(path: Path) -> None:
    if path.exists():
        raise KeyCommandError(f"{path}: already exists; refusing to overwrite")
    if not path.parent.is_dir():
        raise KeyCommandError(f"{path}: directory {path.parent} does not exist")


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

    caps = EXPORTABLE_CAPS if exportable else SIGN_CAPS
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
    if (obj_type, obj_id) != (OBJECT_TYPE_ASYMMETRIC, key_id):
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
    caps = EXPORTABLE_CAPS if exportable else SIGN_CAPS
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


@dataclass(frozen=True, slots=True)
class Listing:
    devices: list[dict[str, Any]]
    problems: list[str]


def list_flow(specs: Sequence[DeviceSpec], fallback: KeyFormat | str) -> Listing:
    devices: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: dict[int, dict[str, bytes | None]] = {}
    for spec in specs:
        entry: dict[str, Any] = {"device": spec.name, "keys": []}
        devices.append(entry)
        dev: Device | None = None
        try:
            dev = Device(spec)
            infos = dev.call(list_asymmetric_keys, ": list")
        except KmsError as e:
            entry["error"] = strip_name(e, spec.name).removeprefix("list: ")  # name shown once
            down = isinstance(e, HsmConnectionError | HsmTimeoutError)
            problems.append(f"{spec.name}: {'unreachable' if down else 'refused'} (see above)")
            continue
        finally:
            if dev is not None:
                dev.close()
        by_id = {k.key_id: k for k in infos}
        for kid in spec.key_chains:
            if kid not in by_id:
                problems.append(f"{spec.name}: configured key {kid} is missing")
                seen.setdefault(kid, {})[spec.name] = None
        for k in infos:
            fmt = spec.key_formats.get(k.key_id, fallback)
            item: dict[str, Any] = {
                "id": k.key_id,
                "label": k.label,
                "algorithm": k.algorithm,
                "capabilities": list(k.capability_names),
                "domains": k.domains,
                "origin": k.origin,
                "chains": list(spec.key_chains.get(k.key_id, ())),
            }
            if k.public_key is not None:
                item["public_key"] = format_public_key(k.public_key, fmt)
                item["address"] = validator_address(k.public_key)
                item["forms"] = public_key_forms(
                    k.public_key, fmt if isinstance(fmt, KeyFormat) else None
                )
                seen.setdefault(k.key_id, {})[spec.name] = k.public_key
            entry["keys"].append(item)
    for kid, holders in sorted(seen.items()):
        distinct = {pk for pk in holders.values() if pk is not None}
        if len(distinct) > 1:
            detail = ", ".join(f"{n}: {pk.hex() if pk else 'missing'}" for n, pk in holders.items())
            problems.append(f"key {kid}: replicas disagree ({detail})")
    return Listing(devices, problems)


def list_softsign(config: Config) -> Listing:
    """The softsign keys of a config, listed like devices (a file instead of a device)."""
    from kms.signer.softsign import load_softsign

    devices: list[dict[str, Any]] = []
    problems: list[str] = []
    chains = {c.id: c for c in config.chains}
    for p in config.softsign:
        entry: dict[str, Any] = {"device": f"softsign {p.path}", "keys": []}
        devices.append(entry)
        try:
            public_key = load_softsign(p.path, p.key_format).public_key
        except KmsError as e:
            entry["error"] = str(e)
            problems.append(f"softsign {p.path}: unreadable ({e})")
            continue
        fmt = next((chains[c].key_format for c in p.chain_ids if c in chains), None)
        entry["keys"].append(
            {
                "id": None,
                "label": p.path.name,
                "algorithm": "ed25519",
                "capabilities": [],
                "key_type": p.key_type,
                "chains": list(p.chain_ids),
                "public_key": format_public_key(public_key, fmt or "base64"),
                "address": validator_address(public_key),
                "forms": public_key_forms(public_key, fmt),
            }
        )
    return Listing(devices, problems)


# --- command line --------------------------------------------------------------------


@contextmanager
def _errors() -> Iterator[None]:
    """KmsError passes through to `kms.cli.errors`; a library ValueError becomes a KmsError."""
    try:
        yield
    except ValueError as e:
        raise KeyCommandError(str(e)) from None


def _specs(
    config: Path | None,
    connectors: tuple[str, ...],
    auth_key: int | None,
    password_file: Path | None,
    *,
    allow_empty: bool = False,
) -> tuple[list[DeviceSpec], Config | None]:
    if config is not None and connectors:
        raise click.UsageError("give either -c CONFIG or --connector, not both")
    if config is not None:
        cfg = load_config(config, check_files=False)
        specs = specs_from_config(cfg)
        if not specs and not allow_empty:
            raise ConfigError(f"{config}: no [[providers.yubihsm]] sections: no device to use")
        if auth_key is None and password_file is None:
            return specs, cfg
        if auth_key is None or password_file is None:
            raise click.UsageError("with -c, give both --auth-key and --password-file (or neither)")
        # another role than the config's (e.g. the operator after kms hsm setup)
        override = functools.partial(read_password_file, password_file)
        return [
            DeviceSpec(s.name, s.connector, auth_key, override, s.key_formats, s.key_chains)
            for s in specs
        ], cfg
    if not connectors:
        raise click.UsageError("give -c CONFIG or --connector URL (repeat for replicas)")
    return specs_from_flags(
        connectors, auth_key if auth_key is not None else 1, password_file
    ), None


_OBJECT_ID = click.IntRange(1, 0xFFFE)
_DOMAINS = click.IntRange(1, 0xFFFF)


def _hsm_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "-c", "--config", type=click.Path(path_type=Path, dir_okay=False), help="kms config"
        ),
        click.option(
            "--connector",
            "connectors",
            multiple=True,
            help="tcp://host:port, http://host:port or yhusb://serial=N (repeat for replicas)",
        ),
        click.option(
            "--auth-key",
            type=_OBJECT_ID,
            help="auth key id [default: the config's, else 1]; with -c also --password-file",
        ),
        click.option(
            "--password-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="file holding the auth key password (mode 0600); prompted if absent",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _key_id(value: int | None) -> int:
    if value is None:
        raise click.UsageError("--key-id is required")
    if not 1 <= value <= 0xFFFE:
        raise click.BadParameter(f"{value}: expected 1..65534", param_hint="'--key-id'")
    return value


_JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def _key_format_for(devices: Sequence[Device], key_id: int | None) -> KeyFormat | None:
    for d in devices:
        if key_id is not None and key_id in d.spec.key_formats:
            return d.spec.key_formats[key_id]
    return None


def _report(
    public_key: bytes,
    *,
    what: str,
    where: list[str],
    as_json: bool,
    key_format: KeyFormat | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """The outcome of keygen/import: every form of the public key, as text or JSON."""
    forms = public_key_forms(public_key, key_format)
    if as_json:
        doc = {"result": what, "written_to": where, "public_key": forms, **(extra or {})}
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{what} on {', '.join(where)}")
    for line in render_forms(forms):
        click.echo(line)
    for k, v in (extra or {}).items():
        click.echo(f"{k.replace('_', ' ') + ':':<21} {v}")


def _show_key(public_key: bytes, key_format: KeyFormat | None = None) -> None:
    for line in render_forms(public_key_forms(public_key, key_format)):
        click.echo(line)


@click.command()
@_hsm_options
@click.option("--key-id", type=int, help="object id of the new key (1..65534)")
@click.option("--label", default=DEFAULT_LABEL, show_default=True)
@click.option(
    "--domains", type=_DOMAINS, default=DEFAULT_DOMAINS, show_default=True, help="bitmask"
)
@click.option("--non-exportable", is_flag=True, help="never exportable (no replicas, no backup)")
@click.option("--wrap-key-id", type=_OBJECT_ID, default=DEFAULT_WRAP_KEY_ID, show_default=True)
@click.option("--backup", type=click.Path(path_type=Path, dir_okay=False), help="wrapped backup")
@click.option(
    "--softsign",
    type=click.Path(path_type=Path, dir_okay=False),
    help="write a new software key (base64 seed, 0600) instead",
)
@_JSON_OPTION
def keygen(
    config: Path | None,
    connectors: tuple[str, ...],
    auth_key: int | None,
    password_file: Path | None,
    key_id: int | None,
    label: str,
    domains: int,
    non_exportable: bool,
    wrap_key_id: int,
    backup: Path | None,
    softsign: Path | None,
    as_json: bool,
) -> None:
    """Generate a consensus key on the first replica and clone it to the others."""
    with _errors():
        if softsign is not None:
            _no_device_options(config, connectors, key_id)
            _write_softsign(softsign, generate_seed(), "generated software key", as_json)
            return
        kid = _key_id(key_id)
        specs, _ = _specs(config, connectors, auth_key, password_file)
        with connected(specs_for_key(specs, kid)) as devices:
            pub = keygen_flow(
                devices,
                kid,
                label=label,
                domains=domains,
                exportable=not non_exportable,
                wrap_key_id=wrap_key_id,
                backup=backup,
            )
            _report(
                pub,
                what=f"generated key {kid}",
                where=[d.name for d in devices],
                as_json=as_json,
                key_format=_key_format_for(devices, kid),
                extra={"wrapped_backup": str(backup)} if backup is not None else None,
            )


def _no_device_options(
    config: Path | None, connectors: tuple[str, ...], key_id: int | None
) -> None:
    if config or connectors or key_id is not None:
        raise click.UsageError("--softsign takes no device options")


def _write_softsign(path: Path, seed: bytes, what: str, as_json: bool) -> None:
    """Write a software key file (base64 seed, 0600) and say what it holds."""
    write_base64_seed(path, seed)
    _report(public_key_from_seed(seed), what=what, where=[str(path)], as_json=as_json)


@click.command("import")
@_hsm_options
@click.option("--key-id", type=int, help="object id to import into (1..65534)")
@click.option("--label", default=DEFAULT_LABEL, show_default=True)
@click.option("--domains", type=_DOMAINS, default=DEFAULT_DOMAINS, show_default=True)
@click.option("--non-exportable", is_flag=True, help="do not allow export under wrap")
@click.option("--force", is_flag=True, help="replace a different key with the same id")
@click.option(
    "--wrap-key-id",
    type=_OBJECT_ID,
    default=DEFAULT_WRAP_KEY_ID,
    show_default=True,
    help="wrap key of a tmkms / yubihsm-shell wrapped file",
)
@click.option(
    "--softsign",
    type=click.Path(path_type=Path, dir_okay=False),
    help="write the key to this software key file instead",
)
@_JSON_OPTION
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def import_cmd(
    config: Path | None,
    connectors: tuple[str, ...],
    auth_key: int | None,
    password_file: Path | None,
    key_id: int | None,
    label: str,
    domains: int,
    non_exportable: bool,
    force: bool,
    wrap_key_id: int,
    softsign: Path | None,
    as_json: bool,
    file: Path,
) -> None:
    """Import FILE into every replica: priv_validator_key.json, base64 seed, kms wrapped
    backup, or a wrapped key written by tmkms / yubihsm-shell (detected by content)."""
    with _errors():
        source = read_key_source(file)
        if softsign is not None:
            _no_device_options(config, connectors, key_id)
            if not isinstance(source, SeedSource):
                raise KeyCommandError(f"{file}: a wrapped backup can only go into a device")
            _write_softsign(softsign, source.seed, f"imported {file}", as_json)
            return
        kid = _key_id(key_id)
        specs, _ = _specs(config, connectors, auth_key, password_file)
        with connected(specs_for_key(specs, kid)) as devices:
            key_format = _key_format_for(devices, kid)
            if isinstance(source, RawWrapped):
                if not as_json:
                    click.echo(
                        f"{file}: wrapped key ({source.origin}, tmkms / yubihsm-shell format)"
                        f" under wrap key {wrap_key_id}; its public key is read from the first"
                        " device"
                    )
                pub = raw_import_flow(
                    devices,
                    kid,
                    source,
                    wrap_key_id,
                    force=force,
                    show=lambda pk: (
                        None
                        if as_json
                        else _report(
                            pk,
                            what=f"imported key {kid} first",
                            where=[devices[0].name],
                            as_json=False,
                            key_format=key_format,
                        )
                    ),
                )
            else:
                if not as_json:
                    click.echo(f"importing {file} as key {kid}:")
                    _show_key(source.public_key, key_format)
                pub = import_flow(
                    devices,
                    kid,
                    source,
                    label=label,
                    domains=domains,
                    exportable=not non_exportable,
                    force=force,
                )
            _report(
                pub,
                what=f"imported key {kid}",
                where=[d.name for d in devices],
                as_json=as_json,
                key_format=key_format,
            )


@click.command("export")
@_hsm_options
@click.option("--key-id", type=int, help="object id of the key to back up")
@click.option("--wrap-key-id", type=_OBJECT_ID, default=DEFAULT_WRAP_KEY_ID, show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["kms", "tmkms"]),
    default="kms",
    show_default=True,
    help="kms: JSON with key id and public key; tmkms: the bare base64 blob tmkms and"
    " yubihsm-shell read",
)
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
def export_cmd(
    config: Path | None,
    connectors: tuple[str, ...],
    auth_key: int | None,
    password_file: Path | None,
    key_id: int | None,
    wrap_key_id: int,
    fmt: str,
    out: Path,
) -> None:
    """Write a wrapped backup of a key (encrypted under the wrap key) to OUT."""
    with _errors():
        kid = _key_id(key_id)
        specs, _ = _specs(config, connectors, auth_key, password_file)
        with connected(specs_for_key(specs, kid)) as devices:
            pub = export_flow(devices, kid, wrap_key_id, out, tmkms=fmt == "tmkms")
            click.echo(f"wrote {out} (key {kid} wrapped under wrap key {wrap_key_id})")
            click.echo(f"validator address:   {validator_address(pub)}")


@click.group()
def keys() -> None:
    """Inspect keys held by the configured devices."""


@keys.command("list")
@_hsm_options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option(
    "--format",
    "key_format",
    type=click.Choice(["bech32", "cosmos-json", "hex", "base64"]),
    help="public key format for keys no chain claims [default: base64]",
)
@click.option("--prefix", default="cosmosvalconspub", show_default=True, help="bech32 prefix")
def list_cmd(
    config: Path | None,
    connectors: tuple[str, ...],
    auth_key: int | None,
    password_file: Path | None,
    as_json: bool,
    key_format: str | None,
    prefix: str,
) -> None:
    """Per device: key id, label, capabilities, public key, validator address."""
    with _errors():
        specs, cfg = _specs(config, connectors, auth_key, password_file, allow_empty=True)
        fallback: KeyFormat | str = key_format or "base64"
        if key_format == "bech32":
            fallback = KeyFormat("bech32", consensus_key_prefix=prefix)
        listing = list_flow(specs, fallback)
        if cfg is not None:
            soft = list_softsign(cfg)
            listing = Listing(listing.devices + soft.devices, listing.problems + soft.problems)
    if as_json:
        click.echo(json.dumps({"devices": listing.devices, "problems": listing.problems}, indent=2))
    else:
        if not listing.devices:
            click.echo("no keys configured (no [[providers.yubihsm]] or [[providers.softsign]])")
        for dev in listing.devices:
            click.echo(dev["device"] + (f"  ERROR: {dev['error']}" if "error" in dev else ""))
            for k in dev["keys"]:
                chains = f"  chains {','.join(k['chains'])}" if k["chains"] else ""
                name = f"key {k['id']}" if k["id"] is not None else "key"
                click.echo(f"  {name}  label {k['label']!r}  {k['algorithm']}{chains}")
                if k["capabilities"]:
                    click.echo(f"    capabilities:        {','.join(k['capabilities'])}")
                if "forms" in k:
                    for line in render_forms(k["forms"], "    "):
                        click.echo(line)
        for p in listing.problems:
            click.echo(f"PROBLEM: {p}", err=True)
    if listing.problems:
        sys.exit(EXIT_REFUSED)
