"""`kms hsm-sim`: run a YubiHSM2 + yubihsm-connector simulator in the foreground.

Owns: argument parsing, the loud "this is a simulator" notice, the
`listening on http://HOST:PORT` line (scripts parse it), and clean exit on
SIGINT/SIGTERM. Never touches protocol logic (kms.sim.yubihsm).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

NOTICE = """\
************************************************************************
* kms hsm-sim: THIS IS A SIMULATED YubiHSM2, NOT A HARDWARE DEVICE.
* Keys are held UNPROTECTED in memory{state}.
* Never load a real validator key into it. For tests and demos only.
************************************************************************"""


@click.command("hsm-sim")
@click.option(
    "--port", type=click.IntRange(0, 65535), required=True, help="TCP port (0: any free port)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--state",
    "state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON state file (created in factory state if missing; keys stored in the clear).",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Time of one Ed25519 signature (110 ~ a real YubiHSM2); other commands cost less.",
)
@click.option(
    "--serial",
    type=click.IntRange(1, 0xFFFFFFFF),
    default=None,
    help="Device serial (default: the state file's, else random per start); tells replicas apart.",
)
def hsm_sim(
    port: int, host: str, state: Path | None, latency_ms: float, serial: int | None
) -> None:
    """Run a YubiHSM2 + connector simulator until SIGINT/SIGTERM."""
    from kms.errors import SimObjectFormatError, SimStateFileError
    from kms.sim.yubihsm import SimulatedHsm

    where = f" and ON DISK in {state}" if state else ""
    click.echo(NOTICE.format(state=where), err=True)
    try:
        sim = SimulatedHsm(state_file=state, latency_ms=latency_ms, serial=serial)
        sim.start(host=host, port=port)
    except (SimStateFileError, SimObjectFormatError, OSError) as e:
        raise click.ClickException(f"kms hsm-sim: {e}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    click.echo(f"listening on {sim.url}", err=True)
    click.echo(f"listening on {sim.url}")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    click.echo("kms hsm-sim: stopped", err=True)
