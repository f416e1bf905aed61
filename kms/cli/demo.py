"""`kms demo`: the whole pipeline on one machine, no hardware, no setup.

Starts YubiHSM2 simulators holding one demo key (replicas), a validator node (the
simulated one by default, or a real `cometbft` binary with `--cometbft PATH`) and
the signer daemon, all on 127.0.0.1 in a throw-away directory, then shows heights
being signed live: latency per request and which replica signed. With two or more
replicas one of them is stopped half-way through, to show failover. At the end a
conflicting vote is sent on purpose to show the double-sign refusal. Exits 0 after
N heights, non-zero if anything a real node would reject was returned.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
from collections import Counter
from pathlib import Path

import click

from kms.cli.demo_cometbft import run_with_cometbft
from kms.cli.demo_setup import DemoSetup
from kms.logs import fields_of, setup_logging
from kms.privval.messages import Dialect, SignedMsgType, Vote
from kms.pubkey import bech32_consensus_pubkey
from kms.sim.validator import (
    HeightReport,
    SignerRefused,
    SimulatedValidator,
    ValidatorSimError,
    now_timestamp,
    random_block_id,
)
from kms.supervisor import build

DEMO_CHAIN = "kms-demo-1"


class _ReplicaTally(logging.Handler):
    """Counts which replica produced each signature, from the service's log records."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        f = fields_of(record)
        if record.getMessage() in ("signed", "reused") and "replica" in f:
            self.counts[str(f["replica"])] += 1


@click.command()
@click.option(
    "--heights",
    default=20,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Heights to sign (at least 1), then exit.",
)
@click.option(
    "--replicas",
    default=2,
    show_default=True,
    type=click.IntRange(0, 5),
    help="Simulated YubiHSM2 replicas (0 = softsign key file).",
)
@click.option(
    "--dialect",
    default="v0.38",
    show_default=True,
    type=click.Choice([d.value for d in Dialect]),
    help="Protocol of the simulated node.",
)
@click.option("--transport", default="tcp", show_default=True, type=click.Choice(["tcp", "unix"]))
@click.option(
    "--latency-ms",
    default=0.0,
    show_default=True,
    help="Simulated HSM signing latency (110 models a real YubiHSM2).",
)
@click.option(
    "--cometbft",
    "cometbft",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Run a real cometbft node (this binary) instead of the simulated one.",
)
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo files here (default: a temporary directory).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show the daemon's own log lines.")
@click.option(
    "--hosts",
    default=1,
    show_default=True,
    type=click.IntRange(1, 2),
    help="2: two kms hosts sharing a watermark in a local etcd cluster (needs etcd).",
)
def demo(
    heights: int,
    replicas: int,
    dialect: str,
    transport: str,
    latency_ms: float,
    cometbft: Path | None,
    workdir: Path | None,
    verbose: bool,
    hosts: int,
) -> None:
    """Run HSM simulators + a validator node + the signer, signing live."""
    setup_logging("text", "INFO" if verbose else "WARNING")
    if hosts == 2:
        from kms.cli.demo_hosts import run_two_hosts

        with tempfile.TemporaryDirectory(prefix="kms-demo-hosts-") as tmp:
            root = workdir or Path(tmp)
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            raise SystemExit(asyncio.run(run_two_hosts(root, heights, _say)))
    tally = _ReplicaTally()
    logging.getLogger("kms.service").addHandler(tally)
    logging.getLogger("kms.service").setLevel(logging.INFO)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="kms-demo-") as tmp:
            code = asyncio.run(
                _demo(
                    Path(tmp),
                    heights,
                    replicas,
                    Dialect(dialect),
                    transport,
                    latency_ms,
                    cometbft,
                    tally,
                )
            )
    else:
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        code = asyncio.run(
            _demo(
                workdir, heights, replicas, Dialect(dialect), transport, latency_ms, cometbft, tally
            )
        )
    raise SystemExit(code)


def _say(text: str) -> None:
    click.echo(text, nl=True)


async def _demo(
    root: Path,
    heights: int,
    replicas: int,
    dialect: Dialect,
    transport: str,
    latency_ms: float,
    cometbft: Path | None,
    tally: _ReplicaTally,
) -> int:
    setup = DemoSetup(root, replicas=replicas, latency_ms=latency_ms)
    try:
        if cometbft is not None:
            return await run_with_cometbft(setup, cometbft, heights, transport, tally.counts, _say)
        setup.start_hsms()
        return await _with_simulated_node(setup, heights, dialect, transport, tally)
    finally:
        setup.stop_hsms()


async def _with_simulated_node(
    setup: DemoSetup, heights: int, dialect: Dialect, transport: str, tally: _ReplicaTally
) -> int:
    node = SimulatedValidator(
        DEMO_CHAIN,
        dialect,
        transport="unix" if transport == "unix" else "tcp",
        path=setup.root / "validator.sock" if transport == "unix" else None,
    )
    await node.start()
    config = setup.write_config(DEMO_CHAIN, node.addr, dialect)
    daemon = await build(config)
    runner = asyncio.create_task(daemon.run(install_signals=False))
    _say(setup.describe())
    _say(f"  validator:  simulated CometBFT node ({dialect.value}) listening on {node.addr}")
    try:
        pub = await node.get_pubkey()
        _say(f"  public key: {bech32_consensus_pubkey(pub, 'cosmosvalconspub')}")
        _say("")
        stop_at = heights // 2 + 1 if len(setup.hsms) >= 2 else None
        seen: Counter[str] = Counter()

        def show(r: HeightReport) -> None:
            delta = tally.counts - seen
            seen.update(delta)
            who = setup.signature_counts(delta)
            lat = "  ".join(f"{k} {v:6.1f} ms" for k, v in r.latency_ms.items() if k != "pubkey")
            _say(f"height {r.height:4d}  {lat}   signed by {who}")

        first = min(heights, stop_at - 1) if stop_at else heights
        await node.run_heights(first, on_height=show)
        if stop_at and heights >= stop_at:
            victim = setup.hsms[-1]
            victim.faults.listener_down()
            _say(
                f"-- {setup.replica_label(setup.names[-1])} stopped (connections refused): "
                "signing continues on the others --"
            )
            await node.run_heights(heights - first, start_height=first + 1, on_height=show)
        _say("")
        # the safety demonstration: a conflicting precommit at the last signed height/round/step
        conflicting = Vote(
            type=SignedMsgType.PRECOMMIT,
            height=heights,
            round=0,
            block_id=random_block_id(),
            timestamp=now_timestamp(),
            validator_address=b"\x01" * 20,
        )
        try:
            await node.sign_vote(conflicting)
            _say("!! a conflicting precommit was signed: this must never happen")
            return 1
        except SignerRefused as e:
            _say(
                f"double-sign check: a precommit for another block at height {heights} was refused "
                f"(code {e.error.code}: {e.error.description})"
            )
        all_lat = [x for k, xs in node.latencies.items() if k != "pubkey" for x in xs]
        if all_lat:
            q = statistics.quantiles(all_lat, n=100) if len(all_lat) > 1 else [all_lat[0]] * 99
            _say(
                f"done: {heights} heights, {len(all_lat)} sign requests answered"
                f" (latency p50 {statistics.median(all_lat):.1f} ms, p99 {q[98]:.1f} ms);"
                f" signatures: {setup.signature_counts(tally.counts)}"
            )
        return 0
    except (ValidatorSimError, SignerRefused) as e:
        _say(f"demo failed: {e}")
        return 1
    finally:
        daemon.stop_event.set()
        await runner
        await node.close()
