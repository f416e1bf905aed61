"""`kms hsm setup|password|status|audit`: YubiHSM2 administration from the command line.

Owns: the command-line surface of kms/hsm/ (options, reading the recovery phrase
or shares, printing it once, writing role password files). The flows live in
kms/hsm/; this module only parses, prints and maps errors to one line.

Errors become one line and an exit code in kms/cli/errors.py (a config that
does not load: 2; anything refused: 1).

The recovery phrase is read from standard input when it is not a terminal (one
phrase line, or share lines `M-X: words`), else prompted without echo. It is
printed exactly once, by `setup` when it creates it, and never written to disk.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from kms.cli.options import CONFIG_OPTION, CONNECTORS_OPTION, FILE, OBJECT_ID, json_option
from kms.config import load_config
from kms.errors import HsmAdminError, KmsError, RecoveryPhraseError
from kms.hsm import phrase, shamir
from kms.hsm.devices import Target, targets_from_config, targets_from_flags, with_auth
from kms.hsm.roles import ROLE_NAMES, role
from kms.keyfile import write_secret_file
from kms.signer.factory import read_password_file


@contextmanager
def _errors() -> Iterator[None]:
    """KmsError passes through to `kms.cli.errors`; a library ValueError becomes a KmsError."""
    try:
        yield
    except ValueError as e:
        raise HsmAdminError(str(e)) from None


def _targets(config: Path | None, connectors: tuple[str, ...]) -> list[Target]:
    if config is not None and connectors:
        raise KmsError("give either -c CONFIG or --connector, not both")
    if config is not None:
        return targets_from_config(load_config(config, check_files=False))
    if not connectors:
        raise KmsError("give -c CONFIG or --connector URL (repeat for replicas)")
    return targets_from_flags(connectors)


def _device_options(f: Callable[..., Any]) -> Callable[..., Any]:
    return CONFIG_OPTION(CONNECTORS_OPTION(f))


def read_recovery() -> bytes:
    """The phrase's entropy, from a phrase or from M shares (stdin or prompts)."""
    if not sys.stdin.isatty():
        lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
        if not lines:
            raise RecoveryPhraseError("no recovery phrase on standard input")
    else:
        first = click.prompt("Recovery phrase (24 words) or share 'M-X: words'", hide_input=True)
        lines = [first]
        if ":" in first:
            threshold = shamir.parse_share(first)[0]
            for i in range(2, threshold + 1):
                lines.append(click.prompt(f"Share {i} of {threshold}", hide_input=True))
    return shamir.recover_entropy(lines)


def _parse_split(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m, sep, n = text.lower().partition("-of-")
    if not sep or not m.isdigit() or not n.isdigit():
        raise RecoveryPhraseError(f"--split {text!r}: expected M-of-N, e.g. 2-of-3")
    if not 2 <= int(m) <= int(n) <= 16:
        raise RecoveryPhraseError(f"--split {text}: need 2 <= M <= N <= 16")
    return int(m), int(n)


def _show_secret(entropy: bytes, split: tuple[int, int] | None) -> None:
    bar = "=" * 72
    click.echo(bar)
    if split is None:
        click.echo("RECOVERY PHRASE (shown once; write it down, store it offline):")
        click.echo(phrase.to_phrase(entropy))
    else:
        m, n = split
        lines = shamir.share_lines(entropy, m, n)
        click.echo(f"RECOVERY SHARES: any {m} of these {n} rebuild the phrase (shown once;")
        click.echo("give each to a different custodian; fewer than M reveal nothing):")
        for line in lines:
            click.echo(line)
    click.echo("It derives the wrap key and every role password: whoever holds it controls")
    click.echo("the HSMs. kms never stores it.")
    click.echo(bar)


@click.group()
def hsm() -> None:
    """YubiHSM2 administration: provisioning, status, audit."""


@hsm.command()
@_device_options
@click.option(
    "--plan", is_flag=True, help="print what would be done on which device; change nothing"
)
@click.option(
    "--recover", is_flag=True, help="use an existing phrase (or shares) instead of a new one"
)
@click.option("--split", help="print M-of-N Shamir shares instead of the phrase, e.g. 2-of-3")
@click.option(
    "--force-audit", is_flag=True, help="forced audit: the device refuses work when its log is full"
)
@click.option("--force", is_flag=True, help="provision devices that are not factory-fresh")
@click.option(
    "--signer-password-file",
    type=FILE,
    help="write the signer role's password here (0600) for kms start",
)
def setup(
    config: Path | None,
    connectors: tuple[str, ...],
    plan: bool,
    recover: bool,
    split: str | None,
    force_audit: bool,
    force: bool,
    signer_password_file: Path | None,
) -> None:
    """Provision factory-fresh YubiHSM2s (every replica at once) from one recovery phrase."""
    from kms.hsm import setup as flow

    with _errors():
        split_mn = _parse_split(split)
        targets = _targets(config, connectors)
        checks = flow.check_devices(targets)
        if plan:
            for line in flow.describe_plan(checks, force_audit=force_audit):
                click.echo(line)
            return
        flow.refuse_unfresh(checks, force=force, echo=lambda s: click.echo(s, err=True))
        if signer_password_file is not None and signer_password_file.exists():
            raise KmsError(f"{signer_password_file}: already exists; refusing to overwrite")
        if recover:
            entropy = read_recovery()
        else:
            entropy = phrase.new_entropy()
            # shown before any write: if a device fails half-way, the phrase is still known
            _show_secret(entropy, split_mn)
            if sys.stdin.isatty():  # nothing is written until the operator confirms
                click.confirm("Written down and checked? Provision the devices now", abort=True)
        flow.run_setup(checks, entropy, force_audit=force_audit, echo=click.echo)
        if signer_password_file is not None:
            _write_password(signer_password_file, entropy, "signer")
        signer = role("signer")
        click.echo(
            f"done. kms start must use auth key {signer.object_id} (the signer role):"
            f' auth = {{ key = {signer.object_id}, password_file = "..." }}'
        )
        bad = [t.name for t in targets if t.auth_key not in (None, signer.object_id)]
        if bad:
            click.echo(
                f"WARNING: the config uses another auth key on {', '.join(bad)};"
                f" set auth.key = {signer.object_id}",
                err=True,
            )


def _write_password(path: Path, entropy: bytes, name: str) -> None:
    write_secret_file(path, (phrase.role_password(entropy, name) + "\n").encode())
    click.echo(f"{name} password written to {path} (mode 0600)")


@hsm.command()
@click.argument("role_name", metavar="ROLE", type=click.Choice(ROLE_NAMES))
@click.option(
    "--out",
    type=FILE,
    required=True,
    help="new file for the password (mode 0600)",
)
def password(role_name: str, out: Path) -> None:
    """Derive a role's auth key password from the recovery phrase into a file."""
    with _errors():
        if out.exists():
            raise KmsError(f"{out}: already exists; refusing to overwrite")
        entropy = read_recovery()
        _write_password(out, entropy, role_name)
        click.echo(f"auth key id: {role(role_name).object_id}")


def _auth_targets(
    config: Path | None,
    connectors: tuple[str, ...],
    auth_key: int | None,
    password_file: Path | None,
    role_name: str | None = None,
) -> list[Target]:
    """Devices with the auth key to use: the config's, or --auth-key/--password-file."""
    targets = _targets(config, connectors)
    if auth_key is None and password_file is None:
        if config is None:
            raise KmsError("give --auth-key and --password-file with --connector")
        return targets
    if password_file is None:
        raise KmsError("--auth-key needs --password-file")
    key = auth_key if auth_key is not None else role(role_name or "signer").object_id
    return with_auth(targets, key, functools.partial(read_password_file, password_file))


def _auth_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--password-file",
        type=FILE,
        help="password of that auth key (mode 0600)",
    )(f)
    return click.option("--auth-key", type=OBJECT_ID, help="auth key id [default: the config's]")(f)


@hsm.command()
@_device_options
@_auth_options
@json_option("one JSON document")
def status(
    config: Path | None,
    connectors: tuple[str, ...],
    auth_key: int | None,
    password_file: Path | None,
    as_json: bool,
) -> None:
    """Per replica: serial, firmware, auth key, free slots, audit log, keys; warnings."""
    import json

    from kms.hsm import status as flow

    with _errors():
        targets = _auth_targets(config, connectors, auth_key, password_file)
        reports, fleet = flow.collect(targets)
    bad = bool(fleet) or any(r.problems for r in reports)
    if as_json:
        doc = {"devices": [r.to_json() for r in reports], "problems": fleet, "ok": not bad}
        click.echo(json.dumps(doc, indent=2))
    else:
        for line in flow.render(reports, fleet):
            click.echo(line)
    if bad:
        sys.exit(1)


@hsm.command()
@click.option(
    "-c",
    "--config",
    type=FILE,
    required=True,
    help="kms config (devices, signer auth key, validator keys, chains' audit_log)",
)
@click.option(
    "--auth-key",
    type=OBJECT_ID,
    default=lambda: role("auditor").object_id,
    show_default="the auditor role's",
    help="auth key that reads the logs",
)
@click.option(
    "--password-file",
    type=FILE,
    required=True,
    help="the auditor's password (kms hsm password auditor --out FILE)",
)
@click.option(
    "--cursor",
    type=FILE,
    help="where the audit remembers what it read [default: hsm-audit.json next to the config]",
)
@click.option(
    "--baseline",
    is_flag=True,
    help="first audit of devices and kms logs that already have history: verify the chains,"
    " start counting from now",
)
@json_option("one JSON document")
def audit(
    config: Path,
    auth_key: int,
    password_file: Path,
    cursor: Path | None,
    baseline: bool,
    as_json: bool,
) -> None:
    """Read every device's audit log, verify it, and reconcile it with kms's audit logs."""
    import json
    from dataclasses import asdict

    from kms.hsm import audit as flow

    with _errors():
        cfg = load_config(config, check_files=False)
        files = [c.audit_log for c in cfg.chains if c.audit_log is not None]
        result = flow.run_audit(
            targets_from_config(cfg),
            files,
            auth_key,
            read_password_file(password_file),
            cursor or config.with_name("hsm-audit.json"),
            baseline=baseline,
        )
    if as_json:
        doc = {
            "ok": result.ok,
            "gaps": result.gaps,
            "extension_allowance": result.extension_allowance,
            "devices": [asdict(d) for d in result.devices],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        for d in result.devices:
            click.echo(
                f"{d.name} (serial {d.serial}): {d.entries_read} new log entries,"
                f" {d.signatures} signatures by kms's signer, {d.kms_records} kms records"
            )
            for n in d.notes:
                click.echo(f"  note: {n}")
        for g in result.gaps:
            click.echo(f"GAP: {g}")
        click.echo("audit: no gaps" if result.ok else f"audit: {len(result.gaps)} gaps")
    if not result.ok:
        sys.exit(1)
