"""The `kms` command group: every documented command is registered and loads."""

from __future__ import annotations

from click.testing import CliRunner

from kms import __version__
from kms.cli.main import _COMMANDS, cli

DOCUMENTED = {
    "start",
    "init",
    "keygen",
    "import",
    "export",
    "keys",
    "state",
    "hsm-sim",
    "demo",
    "handover",
    "hsm",
    "ident",
}


def test_every_documented_command_is_registered() -> None:
    assert set(_COMMANDS) == DOCUMENTED


def test_help_lists_every_command_and_each_loads() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0, r.output
    for name in [*DOCUMENTED, "version"]:
        assert f"  {name}" in r.output
        sub = CliRunner().invoke(cli, [name, "--help"])
        assert sub.exit_code == 0, (name, sub.output)


def test_version() -> None:
    r = CliRunner().invoke(cli, ["version"])
    assert r.exit_code == 0
    assert r.output.strip() == f"kms {__version__}"
