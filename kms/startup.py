"""The `kms start` flow as a library: build the daemon (fail closed), say what it starts from, run, account for the audit.

Owns: the order of a start as an operator sees it: build everything
(`kms.supervisor.build`; any refusal is raised with "start-up refused:" in front),
log the starting point (each chain's watermark and state file, each link's
dialect), run until shutdown, then fail the run if audit records never reached
their file. Never parses arguments or prints (`kms.cli.start`), never opens files,
sockets or devices itself (the supervisor and the modules below it do).
"""

from __future__ import annotations

import logging

from kms.config import Config
from kms.errors import AuditLogError, KmsError
from kms.state.machine import step_name
from kms.supervisor import Daemon, build

log = logging.getLogger("kms.cli")


async def run(config: Config) -> Daemon:
    """Build and run the daemon until it shuts down; the finished daemon is returned."""
    try:
        daemon = await build(config)
    except KmsError as e:
        # said once, by kms.cli.errors, as "error: start-up refused: ..." (not also logged:
        # the log goes to the same stderr)
        e.args = (f"start-up refused: {e}", *e.args[1:])
        raise
    # logged once a signal already means a clean shutdown: an operator (or a test)
    # that stops kms as soon as it sees these lines gets exit code 0, not a kill
    await daemon.run(on_start=lambda: log_starting_point(daemon))
    return daemon


def report_unwritten_audit(daemon: Daemon) -> None:
    """After shutdown: audit records that never reached their file make the exit code 1."""
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
