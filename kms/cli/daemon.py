"""`kms start`: run the signer daemon from a config file.

Thin: resolve the config path (-c, $KMS_CONFIG_FILE, $TMKMS_CONFIG_FILE,
./tmkms.toml), load it, build the daemon (fail closed), log what it starts with
(version, config path, each chain's starting watermark, each link's dialect), run
until SIGTERM/SIGINT. Errors are raised; `kms.cli.errors` gives the exit code:
0 after a clean shutdown, 1 when start-up refuses (state, signer, key mismatch,
audit log), 2 for a configuration error.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kms import __version__
from kms.errors import KmsError
from kms.logs import LOG_LEVELS, setup_logging

if TYPE_CHECKING:
    from kms.config import Config
    from kms.supervisor import Daemon

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
    path = config_path_from_env(config_path)
    log.info(
        "kms starting", extra={"fields": {"version": __version__, "config": str(path.absolute())}}
    )
    config = load_config(path)
    daemon = asyncio.run(_run(config))
    report_unwritten_audit(daemon)


async def _run(config: Config) -> Daemon:
    from kms.supervisor import build

    try:
        daemon = await build(config)
    except KmsError as e:
        # said once, by kms.cli.errors, as "error: start-up refused: ..." (not also logged:
        # the log goes to the same stderr)
        e.args = (f"start-up refused: {e}", *e.args[1:])
        raise
    log_starting_point(daemon)
    await daemon.run()
    return daemon


def report_unwritten_audit(daemon: Daemon) -> None:
    """After shutdown: audit records that never reached their file make the exit code 1."""
    from kms.state.audit import AuditLogError

    lost = {
        cid: g.audit.not_written
        for cid, g in daemon.guards.items()
        if g.audit is not None and g.audit.not_written
    }
    if lost:
        log.error("audit records were lost to their files", extra={"fields": lost})
        raise AuditLogError(
            "audit records not written to their file: "
            + ", ".join(f"chain {cid}: {n}" for cid, n in lost.items())
            + " (each was logged as 'record not written'; recover them from the log)"
        )


def log_starting_point(daemon: Daemon) -> None:
    """One line per chain (its starting watermark) and per link (its dialect)."""
    from kms.state.machine import step_name

    for chain_id, guard in daemon.guards.items():
        s = guard.state
        log.info(
            "chain watermark",
            extra={
                "fields": {
                    "chain": chain_id,
                    "height": s.height,
                    "round": s.round,
                    "step": step_name(s.step),
                    "state_file": str(guard.store.path),
                }
            },
        )
    for v in daemon.config.validators:
        log.info(
            "link configured",
            extra={
                "fields": {
                    "chain": v.chain_id,
                    "addr": v.addr,
                    "protocol_version": v.protocol_version.value,
                }
            },
        )
