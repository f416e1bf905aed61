"""`kms start`: run the signer daemon from a config file.

Thin: parse the options, set up logging, resolve the config path (-c,
$KMS_CONFIG_FILE, $TMKMS_CONFIG_FILE, ./tmkms.toml), load it and hand it to the
flow in `kms.startup` (build fail-closed, log the starting point, run until
SIGTERM/SIGINT, account for the audit). Errors are raised; `kms.cli.errors` gives
the exit code:
0 after a clean shutdown, 1 when start-up refuses (state, signer, key mismatch,
audit log), 2 for a configuration error.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from kms import __version__
from kms.cli.options import CONFIG_PATH_OPTION
from kms.logs import LOG_LEVELS, setup_logging

log = logging.getLogger("kms.cli")

log_options = [
    click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="One line per event, as text or JSON.",
    ),
    click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="info",
        show_default=True,
    ),
]


@click.command()
@CONFIG_PATH_OPTION
@log_options[0]
@log_options[1]
def start(config_path: Path | None, log_format: str, log_level: str) -> None:
    """Run the signer: dial every configured validator and answer its requests."""
    from kms.config import config_path_from_env, load_config

    setup_logging("json" if log_format == "json" else "text", log_level)
    path = config_path_from_env(config_path)
    log.info(
        "kms starting", extra={"fields": {"version": __version__, "config": str(path.absolute())}}
    )
    config = load_config(path)
    from kms import startup  # after logging is set up: it imports the whole daemon

    daemon = asyncio.run(startup.run(config))
    startup.report_unwritten_audit(daemon)
