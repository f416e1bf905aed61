"""Click parameter types and options that several commands share, spelled once.

Owns: the path type for a file argument or option, the object-id range of a
YubiHSM2, and the `-c/--config`, `--connector` and `--json` options. Never
reads the values (each command does) and never decides what an error is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kms.config.schema import MAX_OBJECT_ID, MIN_OBJECT_ID

FILE = click.Path(path_type=Path, dir_okay=False)  # a file (it need not exist yet)
OBJECT_ID = click.IntRange(MIN_OBJECT_ID, MAX_OBJECT_ID)  # a YubiHSM2 object id

CONFIG_OPTION = click.option("-c", "--config", type=FILE, help="kms config")
# for commands that find the config like `kms start` (kms.config.config_path_from_env)
CONFIG_PATH_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    type=FILE,
    default=None,
    help="Config file (default: $KMS_CONFIG_FILE, $TMKMS_CONFIG_FILE, ./tmkms.toml).",
)
CONNECTORS_OPTION = click.option(
    "--connector",
    "connectors",
    multiple=True,
    help="tcp://host:port, http://host:port or yhusb://serial=N (repeat for replicas)",
)


def json_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--json` into the parameter `as_json`."""
    return click.option("--json", "as_json", is_flag=True, help=help)
