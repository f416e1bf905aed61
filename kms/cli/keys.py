"""`kms keygen`, `kms import`, `kms export`, `kms keys list`: their command-line surface only.

Owns: the options of the key commands, which devices they name (`-c` config or
`--connector` flags, `--auth-key` + `--password-file`), the password prompt,
and printing the outcome (every form of the public key, as text or JSON). The
flows and their rules live in kms/hsm/keyflows.py (devices, keygen, import,
export), kms/hsm/keyfiles.py (backup and import files) and kms/hsm/keylist.py
(`keys list`); errors become messages and exit codes in kms/cli/errors.py.
Never talks to a device itself. (A little over 400 lines: the option declarations
of four commands; it holds no flow.)

Devices come from a config (`-c`: every `[[providers.yubihsm]]` section; for
keygen/import/export only the sections whose `keys` list the key id, or all
sections when none does) or from flags (`--connector URL` repeated, one auth
key id and password for all). With `-c`, `--auth-key` + `--password-file`
replace the config's auth key (e.g. the operator role after `kms hsm setup`). Passwords come from files (mode 0600) or a
prompt, never from arguments.

- `kms import` takes a kms wrapped backup, a CometBFT `priv_validator_key.json`,
  a base64 seed (32 bytes, or 64 = seed || public key), or the bare wrap blob
  tmkms and yubihsm-shell write (kms/hsm/backup.py). `kms export --format
  tmkms` writes that form.
- `kms keys list` exits 1 when a device is unreachable, misses a configured
  key, or replicas of a key disagree (the listing is still printed).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from kms.chains import public_key_forms, render_forms
from kms.cli.errors import EXIT_REFUSED
from kms.cli.options import CONFIG_OPTION, CONNECTORS_OPTION, FILE, OBJECT_ID, json_option
from kms.config import Config, KeyFormat, load_config
from kms.config.schema import MAX_OBJECT_ID, MIN_OBJECT_ID
from kms.errors import ConfigError, KeyCommandError
from kms.hsm.backup import RawWrapped
from kms.hsm.keyfiles import SeedSource, read_key_source
from kms.hsm.keyflows import (
    DEFAULT_DOMAINS,
    DEFAULT_LABEL,
    Device,
    DeviceSpec,
    connected,
    export_flow,
    import_flow,
    key_format_for,
    keygen_flow,
    raw_import_flow,
    specs_for_key,
    specs_from_config,
    specs_from_flags,
    with_auth,
)
from kms.hsm.keylist import Listing, list_flow, list_softsign
from kms.hsm.roles import WRAP_KEY_ID
from kms.keyfile import generate_seed, write_base64_seed
from kms.pubkey import public_key_from_seed, validator_address
from kms.signer.factory import read_password_file
from kms.signer.yubihsm_session import parse_connector


@contextmanager
def _errors() -> Iterator[None]:
    """KmsError passes through to `kms.cli.errors`; a library ValueError becomes a KmsError."""
    try:
        yield
    except ValueError as e:
        raise KeyCommandError(str(e)) from None


def _flag_password(auth_key: int, password_file: Path | None) -> Callable[[], str]:
    if password_file is not None:
        return functools.partial(read_password_file, password_file)

    def ask() -> str:
        return str(click.prompt(f"Password for auth key {auth_key}", hide_input=True))

    return ask


def _specs(
    dev: _DeviceArgs, *, allow_empty: bool = False
) -> tuple[list[DeviceSpec], Config | None]:
    config, connectors, auth_key, password_file = (
        dev.config,
        dev.connectors,
        dev.auth_key,
        dev.password_file,
    )
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
        return with_auth(specs, auth_key, functools.partial(read_password_file, password_file)), cfg
    if not connectors:
        raise click.UsageError("give -c CONFIG or --connector URL (repeat for replicas)")
    parsed = []
    for text in connectors:
        try:
            parsed.append(parse_connector(text))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--connector'") from None
    key = auth_key if auth_key is not None else 1
    return specs_from_flags(parsed, key, _flag_password(key, password_file)), None


@contextmanager
def _key_devices(dev: _DeviceArgs, key_id: int | None) -> Iterator[tuple[int, list[Device]]]:
    """The key id and the connected devices a keygen/import/export works on."""
    kid = _key_id(key_id)
    specs, _ = _specs(dev)
    with connected(specs_for_key(specs, kid)) as devices:
        yield kid, devices


_DOMAINS = click.IntRange(1, 0xFFFF)


@dataclass(frozen=True, slots=True)
class _DeviceArgs:
    """The device options of a key command, as given."""

    config: Path | None
    connectors: tuple[str, ...]
    auth_key: int | None
    password_file: Path | None


def _hsm_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The device options, handed to the command as one `dev: _DeviceArgs`."""

    @functools.wraps(f)
    def command(
        *,
        config: Path | None,
        connectors: tuple[str, ...],
        auth_key: int | None,
        password_file: Path | None,
        **rest: Any,
    ) -> Any:
        return f(dev=_DeviceArgs(config, connectors, auth_key, password_file), **rest)

    opts = [
        CONFIG_OPTION,
        CONNECTORS_OPTION,
        click.option(
            "--auth-key",
            type=OBJECT_ID,
            help="auth key id [default: the config's, else 1]; with -c also --password-file",
        ),
        click.option(
            "--password-file",
            type=FILE,
            help="file holding the auth key password (mode 0600); prompted if absent",
        ),
    ]
    for opt in reversed(opts):
        command = opt(command)
    return command


def _key_id(value: int | None) -> int:
    if value is None:
        raise click.UsageError("--key-id is required")
    if not MIN_OBJECT_ID <= value <= MAX_OBJECT_ID:
        raise click.BadParameter(
            f"{value}: expected {MIN_OBJECT_ID}..{MAX_OBJECT_ID}", param_hint="'--key-id'"
        )
    return value


_JSON_OPTION = json_option("machine-readable output")


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


def _report_written(
    public_key: bytes,
    what: str,
    devices: list[Device],
    key_id: int,
    as_json: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    """`_report` for a key now on every device of the command."""
    where = [d.name for d in devices]
    fmt = key_format_for(devices, key_id)
    _report(public_key, what=what, where=where, as_json=as_json, key_format=fmt, extra=extra)


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
@click.option("--wrap-key-id", type=OBJECT_ID, default=WRAP_KEY_ID, show_default=True)
@click.option("--backup", type=FILE, help="wrapped backup")
@click.option(
    "--softsign",
    type=FILE,
    help="write a new software key (base64 seed, 0600) instead",
)
@_JSON_OPTION
def keygen(
    dev: _DeviceArgs,
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
            _no_device_options(dev, key_id)
            _write_softsign(softsign, generate_seed(), "generated software key", as_json)
            return
        with _key_devices(dev, key_id) as (kid, devices):
            pub = keygen_flow(
                devices,
                kid,
                label=label,
                domains=domains,
                exportable=not non_exportable,
                wrap_key_id=wrap_key_id,
                backup=backup,
            )
            extra = {"wrapped_backup": str(backup)} if backup is not None else None
            _report_written(pub, f"generated key {kid}", devices, kid, as_json, extra)


def _no_device_options(dev: _DeviceArgs, key_id: int | None) -> None:
    if dev.config or dev.connectors or key_id is not None:
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
    type=OBJECT_ID,
    default=WRAP_KEY_ID,
    show_default=True,
    help="wrap key of a tmkms / yubihsm-shell wrapped file",
)
@click.option(
    "--softsign",
    type=FILE,
    help="write the key to this software key file instead",
)
@_JSON_OPTION
@click.argument("file", type=FILE)
def import_cmd(
    file: Path,
    dev: _DeviceArgs,
    key_id: int | None,
    force: bool,
    label: str,
    domains: int,
    non_exportable: bool,
    wrap_key_id: int,
    softsign: Path | None,
    as_json: bool,
) -> None:
    """Import FILE into every replica: priv_validator_key.json, base64 seed, kms wrapped
    backup, or a wrapped key written by tmkms / yubihsm-shell (detected by content)."""
    with _errors():
        source = read_key_source(file)
        if softsign is not None:
            _no_device_options(dev, key_id)
            if not isinstance(source, SeedSource):
                raise KeyCommandError(f"{file}: a wrapped backup can only go into a device")
            _write_softsign(softsign, source.seed, f"imported {file}", as_json)
            return
        with _key_devices(dev, key_id) as (kid, devices):
            key_format = key_format_for(devices, kid)
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
            _report_written(pub, f"imported key {kid}", devices, kid, as_json)


@click.command("export")
@_hsm_options
@click.option("--key-id", type=int, help="object id of the key to back up")
@click.option("--wrap-key-id", type=OBJECT_ID, default=WRAP_KEY_ID, show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["kms", "tmkms"]),
    default="kms",
    show_default=True,
    help="kms: JSON with key id and public key; tmkms: the bare base64 blob tmkms and"
    " yubihsm-shell read",
)
@click.argument("out", type=FILE)
def export_cmd(
    dev: _DeviceArgs,
    key_id: int | None,
    wrap_key_id: int,
    fmt: str,
    out: Path,
) -> None:
    """Write a wrapped backup of a key (encrypted under the wrap key) to OUT."""
    with (
        _errors(),
        _key_devices(dev, key_id) as (kid, devices),
    ):
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
    dev: _DeviceArgs,
    as_json: bool,
    key_format: str | None,
    prefix: str,
) -> None:
    """Per device: key id, label, capabilities, public key, validator address."""
    with _errors():
        specs, cfg = _specs(dev, allow_empty=True)
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
        for entry in listing.devices:
            click.echo(entry["device"] + (f"  ERROR: {entry['error']}" if "error" in entry else ""))
            for k in entry["keys"]:
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
