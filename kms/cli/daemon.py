"""`kms start`: run the signer daemon from a config file.

Thin: resolve the config path (-c, $KMS_CONFIG_FILE, $TMKMS_CONFIG_FILE,
./tmkms.toml), load it, build the daemon (fail closed), run until SIGTERM/SIGINT.
Exit codes: 0 after a clean shutdown, 1 when start-up refuses (state, signer,
key mismatch), 2 for a configuration error.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from kms.errors import ConfigError, KmsError
from kms.logs import setup_logging

log = logging.getLogger("kms.cli")

log_options = [
    click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="One line per event, as text or JSON.",
    ),
    click.option("--log-level", default="info", show_default=True),
]


@click.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file (default: $KMS_CONFIG_FILE, $TMKMS_CONFIG_FILE, ./tmkms.toml).",
)
@log_options[0]
@log_options[1]
def start(config_path: Path | None, log_format: str, log_level: str) -> None:
    """Run the signer: dial every configured validator and answer its requests."""
    from kms.config import config_path_from_env, load_config

    setup_logging("json" if log_format == "json" else "text", log_level)
    try:
        path = config_path_from_env(config_path)
        config = load_config(path)
    except ConfigError as e:
        click.echo(f"kms start: {e}", err=True)
        sys.exit(2)
    try:
        asyncio.run(_run(config))
    except KmsError as e:
        # the log goes to stderr: one line there, not the same message twice
        log.error("start-up refused: %s", e)
        sys.exit(1)


async def _run(config: object) -> None:
    from kms.config import Config
    from kms.supervisor import build

    assert isinstance(config, Config)
    daemon = await build(config)
    await daemon.run()
