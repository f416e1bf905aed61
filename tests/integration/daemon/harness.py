"""Helpers for daemon tests: a kms home on disk (keys, state, config) and `kms start` in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kms.identity import write_identity_key
from kms.keyfile import write_base64_seed
from kms.state.machine import SignState
from kms.state.store import StateStore


@dataclass
class Home:
    """A kms directory: identity key, one softsign key (or HSM providers), one state file per chain."""

    root: Path
    seed: bytes
    chains: list[str] = field(default_factory=list)

    @property
    def identity(self) -> Path:
        return self.root / "secrets" / "kms-identity.key"

    @property
    def key(self) -> Path:
        return self.root / "secrets" / "consensus.key"

    def state_file(self, chain: str) -> Path:
        return self.root / "state" / f"{chain}.json"

    def chain_section(self, chain: str, extra: str = "") -> str:
        return (
            f'[[chain]]\nid = "{chain}"\n'
            'key_format = { type = "bech32", account_key_prefix = "cosmospub", '
            'consensus_key_prefix = "cosmosvalconspub" }\n'
            f'state_file = "{self.state_file(chain)}"\n{extra}\n'
        )

    @staticmethod
    def validator_section(chain: str, addr: str, identity: Path, dialect: str) -> str:
        return (
            f'[[validator]]\nchain_id = "{chain}"\naddr = "{addr}"\n'
            f'secret_key = "{identity}"\nprotocol_version = "{dialect}"\n'
            "reconnect = true\ntimeout = 5\n\n"
        )

    def softsign_section(self, chains: Sequence[str]) -> str:
        ids = ", ".join(f'"{c}"' for c in chains)
        return (
            f'[[providers.softsign]]\nchain_ids = [{ids}]\nkey_type = "consensus"\n'
            f'key_format = "base64"\npath = "{self.key}"\n\n'
        )

    def write_config(self, text: str, name: str = "kms.toml") -> Path:
        path = self.root / name
        path.write_text(text)
        return path


def make_home(root: Path, chains: Sequence[str], *, seed: bytes | None = None) -> Home:
    root.mkdir(parents=True, exist_ok=True)
    (root / "secrets").mkdir(mode=0o700, exist_ok=True)
    seed = seed or os.urandom(32)
    home = Home(root, seed, list(chains))
    write_identity_key(home.identity)
    write_base64_seed(home.key, seed)
    for c in chains:
        StateStore.create(home.state_file(c), SignState.initial())
    return home


class KmsProcess:
    """`kms start -c CONFIG` in a subprocess, stderr captured to a file."""

    def __init__(self, config: Path, *, log_format: str = "json") -> None:
        self.config = config
        self.log_path = config.with_suffix(".log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kms", "start", "-c", str(config), "--log-format", log_format],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 10.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._log.close()


@contextlib.contextmanager
def running_kms(config: Path) -> Iterator[KmsProcess]:
    p = KmsProcess(config)
    try:
        yield p
    finally:
        p.kill()


def run_kms_start(config: Path, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run `kms start` expecting it to refuse at start-up."""
    return subprocess.run(
        [sys.executable, "-m", "kms", "start", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.02) -> float:
    """Poll `pred()` until true; return the time it took. Raises TimeoutError."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError
        await asyncio.sleep(interval)
    return time.monotonic() - t0


def listening_inodes() -> set[str]:
    """Socket inodes in LISTEN state on tcp/tcp6/udp (any process)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":
                    inodes.add(cols[9])
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                inodes.add(line.split()[9])
    return inodes


def socket_inodes_of(pid: int) -> set[str]:
    out: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                out.add(target[len("socket:[") : -1])
    return out
