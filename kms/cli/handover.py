"""Operator commands for the shared watermark: `kms state push`, `kms state show --shared`,
`kms handover seal|export|import` (README "Several signer hosts", HA.md §4).

Owns: argument parsing and output for these commands. Thin: every change to an
etcd record is `kms.shared.admin` (compare-and-swap loops that only ever raise a
watermark). Never signs and never writes a local state file. Every failure is one
line on stderr and a non-zero exit code (KmsError is turned into that by
kms.cli.errors.run_command, like every command).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from kms.cli.options import CONFIG_PATH_OPTION
from kms.errors import ConfigError
from kms.privval.limits import MAX_HEIGHT

R = TypeVar("R")

_CONFIG = CONFIG_PATH_OPTION


def _with_client(config_path: Path | None, body: Callable[[Any, Any], Awaitable[R]]) -> R:
    """Load the config, open the etcd client, run body(config, client), close."""
    from kms.config import config_path_from_env, load_config
    from kms.shared.setup import make_client

    config = load_config(config_path_from_env(config_path), check_files=False)
    if config.shared_state is None:
        raise ConfigError(f"{config.path}: no [shared_state] section; nothing is shared")
    shared = config.shared_state

    async def run() -> R:
        client = make_client(shared)
        try:
            return await body(config, client)
        finally:
            await client.close()

    coro: Coroutine[Any, Any, R] = run()
    return asyncio.run(coro)


def _chains(config: Any, chain_id: str | None) -> list[str]:
    from kms.shared.setup import gated_chains

    gated = gated_chains(config)
    if chain_id is None:
        return gated
    if chain_id not in gated:
        raise ConfigError(f"{config.path}: chain {chain_id!r} is not a [shared_state] chain here")
    return [chain_id]


@click.command("push")
@_CONFIG
@click.option("--chain-id", required=True, help="The chain whose state file to push.")
def push_cmd(config_path: Path | None, chain_id: str) -> None:
    """Initialise or raise the shared etcd watermark from this host's state file.

    Never lowers it: a record already at or above the state file is left alone.
    """
    from kms.shared.admin import push
    from kms.state.store import StateStore

    async def body(config: Any, client: Any) -> None:
        _chains(config, chain_id)
        local = StateStore(config.chain(chain_id).state_file).load()
        out = await push(
            client, config.shared_state.prefix, chain_id, local, config.shared_state.host_id
        )
        click.echo(out.message)

    _with_client(config_path, body)


def show_shared(config_path: Path | None, chain_id: str | None, as_json: bool) -> None:
    """`kms state show --shared`: the etcd record(s) as this host sees them."""
    from kms.shared.admin import read
    from kms.shared.record import encode

    async def body(config: Any, client: Any) -> None:
        prefix = config.shared_state.prefix
        out: dict[str, Any] = {}
        for cid in _chains(config, chain_id):
            got = await read(client, prefix, cid)
            out[cid] = None if got is None else {
                **json.loads(encode(got[0])), "mod_revision": got[1]
            }  # fmt: skip
        if as_json:
            click.echo(json.dumps(out, indent=2, sort_keys=True))
            return
        for cid, rec in out.items():
            if rec is None:
                click.echo(f"{cid}: no shared watermark (run: kms state push --chain-id {cid})")
                continue
            seal = f", sealed at height {rec['sealed_at']}" if rec["sealed_at"] else ""
            click.echo(
                f"{cid}: height {rec['height']}, round {rec['round']}, step {rec['step']},"
                f" written by {rec['host']} at {rec['written_at']}"
                f" (mod_revision {rec['mod_revision']}){seal}"
            )

    _with_client(config_path, body)


@click.group()
def handover() -> None:
    """Move signing between two regions (two etcd clusters) without a double sign."""


@handover.command("seal")
@_CONFIG
@click.option("--at-height", "height", type=click.IntRange(1, MAX_HEIGHT), required=True)
@click.option("--chain-id", default=None, help="One chain (default: every shared chain).")
def seal_cmd(config_path: Path | None, height: int, chain_id: str | None) -> None:
    """Stop every host of this cluster from signing above HEIGHT."""
    from kms.shared.admin import seal

    async def body(config: Any, client: Any) -> None:
        for cid in _chains(config, chain_id):
            click.echo((await seal(client, config.shared_state.prefix, cid, height)).message)

    _with_client(config_path, body)


@handover.command("export")
@_CONFIG
@click.option("--chain-id", default=None, help="One chain (default: every shared chain).")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
def export_cmd(config_path: Path | None, chain_id: str | None, out: Path) -> None:
    """Write this cluster's sealed watermarks to OUT (refuses unsealed chains)."""
    from kms.shared.admin import export

    async def body(config: Any, client: Any) -> dict[str, Any]:
        return await export(client, config.shared_state.prefix, _chains(config, chain_id))

    doc = _with_client(config_path, body)
    if out.exists():
        raise click.ClickException(f"{out} exists; not overwriting it")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    sealed = ", ".join(f"{c} sealed at {e['sealed_at']}" for c, e in doc["chains"].items())
    click.echo(f"wrote {out}: {sealed}")


@handover.command("import")
@_CONFIG
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def import_cmd(config_path: Path | None, file: Path) -> None:
    """Raise this cluster's watermarks above another region's seal (from `handover export`)."""
    from kms.shared.admin import import_sealed, parse_handover

    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise click.ClickException(f"{file}: cannot read a hand-over file: {e}") from None

    async def body(config: Any, client: Any) -> None:
        sealed = parse_handover(doc)
        gated = set(_chains(config, None))
        unknown = sorted(set(sealed) - gated)
        if unknown:
            raise ConfigError(f"{file}: chains {unknown} are not [shared_state] chains here")
        for cid, height in sorted(sealed.items()):
            out = await import_sealed(client, config.shared_state.prefix, cid, height)
            click.echo(out.message)

    _with_client(config_path, body)
