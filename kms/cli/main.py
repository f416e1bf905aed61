"""The `kms` command group.

Each subcommand lives in its own module under kms/cli/ and is loaded lazily (so
`kms state show` does not import the HSM library). Commands stay thin: they
parse arguments, call the library and raise; `kms.cli.errors` (called from the
group's `main`) turns whatever they raise into one `error: ...` line on stderr and
the exit code (2 usage/configuration, 1 refused at run time).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from kms import __version__
from kms.cli.errors import run_command
from kms.harden import disable_core_dumps

# command name -> "module:attribute"
_COMMANDS: dict[str, str] = {
    "demo": "kms.cli.demo:demo",
    "export": "kms.cli.keys:export_cmd",
    "handover": "kms.cli.handover:handover",
    "hsm": "kms.cli.hsm:hsm",
    "hsm-sim": "kms.cli.hsm_sim:hsm_sim",
    "ident": "kms.cli.ident:ident",
    "import": "kms.cli.keys:import_cmd",
    "init": "kms.cli.init:init",
    "keygen": "kms.cli.keys:keygen",
    "keys": "kms.cli.keys:keys",
    "start": "kms.cli.start:start",
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

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        code = run_command(
            lambda: super(_LazyGroup, self).main(args, prog_name, complete_var, False, **extra)
        )
        sys.exit(code)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "-V", "--version", prog_name="kms", message="%(prog)s %(version)s"
)
def cli() -> None:
    """kms: a remote signer for CometBFT validators (YubiHSM2 replicas or softsign)."""
    # Every command may hold key material: no core dump may ever contain it.
    disable_core_dumps()


@cli.command()
def version() -> None:
    """Print the version."""
    click.echo(f"kms {__version__}")


def main() -> None:
    cli(prog_name="kms")
