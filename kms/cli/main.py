"""The `kms` command group.

Each subcommand lives in its own module under kms/cli/ and is loaded lazily (so
`kms state show` does not import the HSM library). Commands stay thin: they
parse arguments, call the library, and turn KmsError into one clear line on
stderr with a non-zero exit code.
"""

from __future__ import annotations

import importlib

import click

from kms import __version__

# command name -> "module:attribute"
_COMMANDS: dict[str, str] = {
    "demo": "kms.cli.demo:demo",
    "export": "kms.cli.keys:export_cmd",
    "hsm-sim": "kms.cli.hsm_sim:hsm_sim",
    "ident": "kms.cli.ident:ident",
    "import": "kms.cli.keys:import_cmd",
    "init": "kms.cli.init:init",
    "keygen": "kms.cli.keys:keygen",
    "keys": "kms.cli.keys:keys",
    "start": "kms.cli.daemon:start",
    "state": "kms.cli.state:state",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name].split(":")
            cmd = getattr(importlib.import_module(module), attr)
            assert isinstance(cmd, click.Command)
            return cmd
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """kms: a remote signer for CometBFT validators (YubiHSM2 replicas or softsign)."""


@cli.command()
def version() -> None:
    """Print the version."""
    click.echo(f"kms {__version__}")


def main() -> None:
    cli()
