"""`kms demo --cometbft PATH`: the demo against a real CometBFT node.

Owns: a one-validator chain on 127.0.0.1 in the demo directory: `cometbft init`,
fast consensus timeouts, the built-in kvstore app, `priv_validator_laddr`
pointing at the signer. The node's own key is moved into the simulated HSMs (or a
softsign file) and the node signs nothing itself: with one validator, every
block it commits carries a signature that came from `kms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kms.cli.demo_setup import DemoSetup
from kms.keyfile import read_priv_validator_key
from kms.privval.messages import Dialect
from kms.supervisor import build

FAST_CONSENSUS = {
    "timeout_propose": '"1s"',
    "timeout_prevote": '"300ms"',
    "timeout_precommit": '"300ms"',
    "timeout_commit": '"300ms"',
}


def dialect_of(version: str) -> Dialect:
    """Map `cometbft version` output (e.g. '0.38.17', '1.0.1') to our dialect."""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"cannot tell the CometBFT version from {version!r}")
    major, minor = int(m.group(1)), int(m.group(2))
    if major >= 1:
        return Dialect.V1
    return {34: Dialect.V0_34, 37: Dialect.V0_37, 40: Dialect.V0_40}.get(minor, Dialect.V0_38)


def cometbft_version(binary: Path) -> tuple[str, Dialect]:
    """`binary version` -> (version text, dialect); a usage error if it is not a cometbft."""
    try:
        run = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30)
        version = run.stdout.strip()
        return version, dialect_of(version)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise click.BadParameter(
            f"{binary} is not a working cometbft binary ({e})", param_hint="'--cometbft'"
        ) from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _edit_config(text: str, changes: dict[str, dict[str, str]]) -> str:
    """Set `key = value` lines in the given sections ('' = top level) of a config.toml."""
    section = ""
    out = []
    for line in text.splitlines():
        head = re.match(r"^\[([^\]]+)\]\s*$", line)
        if head:
            section = head.group(1)
        key = re.match(r"^([a-z_]+)\s*=", line)
        if key and key.group(1) in changes.get(section, {}):
            line = f"{key.group(1)} = {changes[section][key.group(1)]}"
        out.append(line)
    return "\n".join(out) + "\n"


def _rpc(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=2) as r:
        doc: dict[str, Any] = json.loads(r.read())
        result: dict[str, Any] = doc.get("result", doc)
        return result


async def run_with_cometbft(
    setup: DemoSetup,
    binary: Path,
    heights: int,
    transport: str,
    counts: Counter[str],
    say: Callable[[str], None],
) -> int:
    version, dialect = cometbft_version(binary)
    home = setup.root / "node"
    try:
        subprocess.run(
            [str(binary), "init", "--home", str(home)], capture_output=True, check=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise click.ClickException(f"--cometbft {binary}: `cometbft init` failed: {e}") from None
    key_file = home / "config" / "priv_validator_key.json"
    os.chmod(key_file, 0o600)
    setup.seed = read_priv_validator_key(key_file).seed
    key_file.unlink()  # the node must not be able to sign by itself
    setup.start_hsms()
    rpc_port, p2p_port = _free_port(), _free_port()
    if transport == "unix":
        laddr = f"unix://{setup.root / 'privval.sock'}"
    else:
        laddr = f"tcp://127.0.0.1:{_free_port()}"
    cfg = home / "config" / "config.toml"
    cfg.write_text(
        _edit_config(
            cfg.read_text(),
            {
                "": {"priv_validator_laddr": f'"{laddr}"'},
                "rpc": {"laddr": f'"tcp://127.0.0.1:{rpc_port}"'},
                "p2p": {"laddr": f'"tcp://127.0.0.1:{p2p_port}"'},
                "consensus": FAST_CONSENSUS,
            },
        )
    )
    chain_id = json.loads((home / "config" / "genesis.json").read_text())["chain_id"]
    config = setup.write_config(chain_id, laddr, dialect)
    daemon = await build(config)
    runner = asyncio.create_task(daemon.run(install_signals=False))
    say(setup.describe())
    say(f"  validator:  cometbft {version} ({dialect.value}), chain {chain_id}, signer at {laddr}")
    log_path = setup.root / "node.log"
    with open(log_path, "wb") as log:
        node = subprocess.Popen(
            [str(binary), "start", "--home", str(home), "--proxy_app=kvstore"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        seen = 0
        reported: Counter[str] = Counter()
        deadline = time.monotonic() + 30 + heights * 5
        while seen < heights:
            if node.poll() is not None:
                say(f"cometbft exited with {node.returncode}; its log is {log_path}")
                return 1
            if time.monotonic() > deadline:
                say(f"no progress: only {seen} heights; node log: {log_path}")
                return 1
            with contextlib.suppress(OSError, ValueError, KeyError):
                status = await asyncio.to_thread(_rpc, rpc_port, "status")
                h = int(status["sync_info"]["latest_block_height"])
                if h > seen:
                    delta = counts - reported
                    reported.update(delta)
                    who = setup.signature_counts(delta)
                    say(f"height {h:4d}  committed by cometbft   signed by {who}")
                    seen = h
            await asyncio.sleep(0.2)
        say(
            f"done: cometbft committed {seen} blocks, each signed through kms;"
            f" signatures: {setup.signature_counts(counts)}"
        )
        return 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
        daemon.stop_event.set()
        await runner
