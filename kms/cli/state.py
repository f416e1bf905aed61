"""`kms state`: inspect and carry the double-sign watermark (show, check, history, import,
set, export).

Owns: the operator commands around state files and audit logs. Thin: parsing and
validation live in `kms.state.store` / `kms.state.audit`. Never signs, never
lowers a watermark without `--force` and a confirmation, and takes the state
file's lock before writing, so it refuses to touch a file a running kms owns.
Failures are raised; `kms.cli.errors` turns them into one line and the exit code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from kms.errors import StateFileError
from kms.fsutil import atomic_write
from kms.privval.limits import MAX_HEIGHT, MAX_ROUND
from kms.state.audit import read_audit
from kms.state.format1 import (
    check_chain,
    encode_block_id,
    encode_state,
    format_time,
    sign_bytes_chain,
)
from kms.state.format2 import decode_importable
from kms.state.machine import SignState, Step, block_id_text, step_name
from kms.state.store import StateStore

_STEPS_BY_NAME = {step_name(s): int(s) for s in Step}


class _StepType(click.ParamType[int]):
    name = "step"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value) if isinstance(value, int) else str(value).strip().lower()
        if text in _STEPS_BY_NAME:
            return _STEPS_BY_NAME[text]
        if text in {str(k) for k in _STEPS_BY_NAME.values()}:
            return int(text)
        self.fail(
            f"{value!r} is not a step: use proposal, prevote, precommit or 0, 1, 2", param, ctx
        )


def _hrs(state: SignState) -> str:
    return f"height {state.height}, round {state.round}, step {step_name(state.step)}"


@click.group()
def state() -> None:
    """Inspect and carry the double-sign state (the last signed height/round/step)."""


@state.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--shared", is_flag=True, help="Show the etcd watermark of [shared_state] instead.")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), default=None)
@click.option("--chain-id", default=None, help="With --shared: one chain (default: all).")
def show(
    file: Path | None,
    as_json: bool,
    shared: bool,
    config_path: Path | None,
    chain_id: str | None,
) -> None:
    """Show what FILE says was last signed (or, with --shared, the etcd record)."""
    if shared:
        from kms.cli.handover import show_shared

        return show_shared(config_path, chain_id, as_json)
    if file is None:
        raise click.UsageError("give a state FILE, or --shared -c CONFIG")
    store = StateStore(file)
    s = store.load()
    chain = sign_bytes_chain(s)
    mtime = datetime.fromtimestamp(file.stat().st_mtime, UTC)
    if as_json:
        out = {
            "file": str(file),
            "format": store.format,
            "chain_id": chain,
            "height": s.height,
            "round": s.round,
            "step": s.step,
            "step_name": step_name(s.step),
            "block_id": encode_block_id(s.block_id),
            "nil_block": s.block_id.is_nil,
            "has_sign_bytes": bool(s.sign_bytes),
            "updated_at": format_time(s.updated_at) if s.updated_at else None,
            "file_modified": format_time(mtime),
        }
        click.echo(json.dumps(out, indent=2))
        return
    bid = s.block_id
    lines = [
        f"state file:  {file} (format {store.format})",
        f"height:      {s.height}",
        f"round:       {s.round}",
        f"step:        {s.step} ({step_name(s.step)})",
        "block id:    "
        + (
            "<nil>"
            if bid.is_nil
            else f"{bid.hash.hex().upper() or '<empty>'} "
            f"(parts {bid.part_set_header.total}, {bid.part_set_header.hash.hex().upper()})"
        ),
        "sign bytes:  "
        + (
            f"stored ({len(s.sign_bytes)} bytes, chain {chain})"
            if s.sign_bytes
            else "none (a request at exactly this height/round/step will be refused)"
        ),
        f"written:     {format_time(s.updated_at) if s.updated_at else 'unknown'}"
        f" (file modified {format_time(mtime)})",
    ]
    click.echo("\n".join(lines))


@state.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(file: Path, as_json: bool) -> None:
    """Exit 0 only if FILE is a valid state file."""
    s = StateStore(file).load()
    if as_json:
        doc = {
            "file": str(file),
            "ok": True,
            "height": s.height,
            "round": s.round,
            "step": s.step,
            "step_name": step_name(s.step),
        }
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{file}: ok ({_hrs(s)})")


@state.command()
@click.argument("audit_log", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--height", "height", type=click.IntRange(0), help="Only this height.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines).")
def history(audit_log: Path, height: int | None, as_json: bool) -> None:
    """List the signatures and refusals recorded in AUDIT_LOG."""
    for e in read_audit(audit_log):
        if height is not None and e.height != height:
            continue
        if as_json:
            click.echo(e.to_line(), nl=False)
            continue
        block = e.block_id.get("hash") or "<nil>"
        parts = [
            format_time(e.time),
            e.chain,
            f"{e.height}/{e.round}/{e.step_name}",
            e.outcome,
            f"block={block[:12]}",
            f"sha256={e.sign_bytes_sha256[:16]}",
        ]
        if e.replica:
            parts.append(f"replica={e.replica}")
        if e.reason:
            parts.append(f"reason={e.reason}")
        click.echo("  ".join(parts))


@state.command(name="import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="CometBFT priv_validator_state.json, a tmkms state file, or a kms state file.",
)
@click.option(
    "--chain-id",
    help="Refuse a source whose stored sign bytes were made for another chain.",
)
def import_cmd(file: Path, source: Path, chain_id: str | None) -> None:
    """Carry the watermark from another signer's state file into FILE (never lowers it)."""
    try:
        data = source.read_bytes()
    except OSError as e:
        raise StateFileError(f"{source}: cannot read: {e.strerror or e}") from None
    try:
        imported, kind = decode_importable(data)
        # the chain this watermark belongs to: --chain-id, else what FILE already holds
        if chain_id is None and file.exists():
            chain_id = sign_bytes_chain(StateStore(file).load())
        if chain_id is not None:
            check_chain(imported, chain_id)
    except ValueError as e:  # the decoders' shape errors (BadState)
        raise StateFileError(f"{source}: not a state file we can import: {e}") from None
    imported = _with_time(imported)
    if not file.exists():
        StateStore.create(file, imported)
        click.echo(f"created {file} from {kind} state {source}: {_hrs(imported)}")
        return
    store = StateStore(file)
    with store.lock():
        current = store.load()
        if imported.hrs < current.hrs:
            raise StateFileError(
                f"{file}: refusing to lower the watermark from {_hrs(current)} to "
                f"{_hrs(imported)} (from {source})"
            )
        if imported.hrs == current.hrs:
            same_block = imported.block_id == current.block_id
            if imported.sign_bytes and not current.sign_bytes and same_block:
                store.save(imported)
                click.echo(f"{file}: added the sign bytes from {source} at {_hrs(current)}")
            elif same_block and imported.sign_bytes in (b"", current.sign_bytes):
                click.echo(f"{file}: already at {_hrs(current)}; nothing to do")
            else:
                raise StateFileError(
                    f"{file}: {source} disagrees about what was signed at {_hrs(current)} "
                    f"(block {block_id_text(imported.block_id)} vs "
                    f"{block_id_text(current.block_id)}); resolve by hand"
                )
            return
        store.save(imported)
    click.echo(f"{file}: raised from {_hrs(current)} to {_hrs(imported)} ({kind} state {source})")


@state.command(name="set")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--height", required=True, type=click.IntRange(0, MAX_HEIGHT))
@click.option("--round", "round_", default=0, show_default=True, type=click.IntRange(0, MAX_ROUND))
@click.option(
    "--step",
    default="precommit",
    show_default=True,
    type=_StepType(),
    help="proposal, prevote or precommit (or kms/tmkms numbers 0, 1, 2; CometBFT's"
    " priv_validator_state.json numbers them 1, 2, 3: use the names).",
)
@click.option("--force", is_flag=True, help="Allow lowering the watermark (asks to confirm).")
def set_cmd(file: Path, height: int, round_: int, step: int, force: bool) -> None:
    """Set FILE's watermark to HEIGHT/ROUND/STEP (upward only unless --force).

    Nothing is recorded as signed at that exact height/round/step, so a request
    there is refused; signing resumes above it.
    """
    new = _with_time(SignState(height, round_, step))
    if not file.exists():
        StateStore.create(file, new)
        click.echo(f"created {file}: {_hrs(new)}")
        return
    store = StateStore(file)
    with store.lock():
        try:
            current: SignState | None = store.load()
        except StateFileError as e:
            if not force:
                raise
            click.echo(f"warning: {e}", err=True)
            current = None
        if current is not None and new.hrs < current.hrs and not force:
            raise StateFileError(
                f"{file}: refusing to lower the watermark from {_hrs(current)} to "
                f"{_hrs(new)}; use --force if you are sure nothing was signed above it"
            )
        if force and (current is None or new.hrs < current.hrs):
            was = f"Lower {file} from {_hrs(current)}" if current else f"Replace unreadable {file}"
            click.confirm(
                f"{was} to {_hrs(new)}? Signing again below a height that "
                "was already signed can get the validator slashed",
                abort=True,
                err=True,
            )
        if current is None:
            store.replace(new)  # unreadable: nothing to write a slot next to
        else:
            store.save(new)
    click.echo(f"{file}: set to {_hrs(new)}")


@state.command(name="export")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tmkms"]),
    default="tmkms",
    show_default=True,
    help="tmkms: format 1, the JSON document tmkms reads.",
)
def export_cmd(file: Path, out: Path, fmt: str) -> None:
    """Write FILE's watermark to OUT in another signer's format (OUT must not exist)."""
    s = StateStore(file).load()
    try:
        atomic_write(out, encode_state(s), overwrite=False)
    except FileExistsError:
        raise StateFileError(f"{out}: already exists; refusing to overwrite it") from None
    except OSError as e:
        raise StateFileError(f"{out}: cannot write: {e}") from None
    click.echo(f"{out}: {fmt} state at {_hrs(s)}")


def _with_time(s: SignState) -> SignState:
    return SignState(
        s.height, s.round, s.step, s.block_id, s.sign_bytes, s.signature, datetime.now(UTC)
    )


def _add_shared_commands() -> None:
    from kms.cli.handover import push_cmd

    state.add_command(push_cmd)


_add_shared_commands()
