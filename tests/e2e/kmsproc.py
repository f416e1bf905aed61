"""kms as the operator runs it, for the end-to-end tests: homes, configs, CLI calls, processes.

Owns: a kms "host" (a private directory made by `kms init`, its tmkms.toml written by
us, the state file created with `kms state import`), running `kms start` and
`kms hsm-sim` as separate processes (own process groups, logs kept in the home),
provisioning simulator keys with `kms import`, and watching the state file for
regressions. Never imports kms internals: everything goes through the command line,
like an operator would do it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kms.errors import StateFileError
from kms.state.store import StateStore

from .cometbft import Poller, run_tool, signal_group

KMS = [sys.executable, "-m", "kms"]
HSM_PASSWORD = "password"  # the simulator's factory auth key 1 password, as on a new YubiHSM2


class KmsCliError(RuntimeError):
    pass


def kms_cli(*args: str, timeout: float = 60, cwd: Path | None = None) -> str:
    """Run one `kms` command; its stdout, or KmsCliError with stderr."""
    return run_tool(
        [*KMS, *args], f"kms {' '.join(args)}", timeout=timeout, cwd=cwd, error=KmsCliError
    )


class _Process:
    """A child in its own process group with its output appended to a log file."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _spawn(self, argv: Sequence[str], *, pipe_stdout: bool = False) -> subprocess.Popen[bytes]:
        if self.running:
            raise RuntimeError(f"{self.name} already running")
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.starts} at {time.time():.3f}: {argv} =====\n".encode())
        log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else log,
            stderr=log,
            start_new_session=True,
            env=env,
        )
        log.close()
        return self.proc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the process group (SIGSTOP freezes it, SIGCONT thaws it)."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} is not running")
        signal_group(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        """Signal the process group and wait; escalates to SIGKILL. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            signal_group(proc.pid, signal.SIGCONT)  # a frozen process cannot act on SIGTERM
            signal_group(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait(10)
        signal_group(proc.pid, signal.SIGKILL)
        return proc.returncode

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.stop(signal.SIGKILL)

    def assert_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.proc.returncode}\n{self.describe()}"
            )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        tail = "\n".join(self.log_text().splitlines()[-60:])
        return f"--- {self.name} log tail ({self.log_path}) ---\n{tail}"


# --- HSM simulator ------------------------------------------------------------------------


class HsmSim(_Process):
    """`kms hsm-sim`: a YubiHSM2 + connector simulator on 127.0.0.1 with a state file."""

    LISTENING = re.compile(r"listening on (http://[0-9.]+:(\d+))")

    def __init__(self, directory: Path, name: str, latency_ms: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(name, directory / f"{name}.log")
        self.state = directory / f"{name}.state"
        self.latency_ms = latency_ms
        self.port = 0
        self.url = ""

    def start(self, timeout: float = 20) -> str:
        """Start (on the port it had before, if restarted); returns the connector URL."""
        proc = self._spawn(
            [
                *KMS,
                "hsm-sim",
                "--port",
                str(self.port),
                "--state",
                str(self.state),
                "--latency-ms",
                str(self.latency_ms),
            ],
            pipe_stdout=True,
        )
        found = threading.Event()
        assert proc.stdout is not None
        stdout = proc.stdout

        def pump() -> None:
            with self.log_path.open("ab") as log:
                for raw in iter(stdout.readline, b""):
                    log.write(raw)
                    log.flush()
                    m = self.LISTENING.search(raw.decode(errors="replace"))
                    if m and not found.is_set():
                        self.url, self.port = m.group(1), int(m.group(2))
                        found.set()

        threading.Thread(target=pump, name=f"{self.name}-stdout", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start\n{self.describe()}")
        return self.url

    @property
    def addr(self) -> str:
        """The config form of the connector address."""
        return f"tcp://127.0.0.1:{self.port}"


# --- a kms host ------------------------------------------------------------------------------


@dataclass
class ValidatorEntry:
    addr: str
    protocol_version: str


@dataclass
class KmsHost(_Process):
    """One kms installation: a home directory made by `kms init` plus a running daemon."""

    home: Path
    chain_id: str
    host_name: str = "kms"
    validators: list[ValidatorEntry] = field(default_factory=list)
    softsign_key: Path | None = None
    hsms: list[HsmSim] = field(default_factory=list)
    sign_extensions: bool = True
    extra_toml: str = ""

    def __post_init__(self) -> None:
        _Process.__init__(self, self.host_name, self.home.parent / f"{self.host_name}.log")

    # -- home -------------------------------------------------------------------------------

    def init(self) -> None:
        kms_cli(
            "init",
            str(self.home),
            "--chain-id",
            self.chain_id,
            "--account-prefix",
            "cosmospub",
            "--consensus-prefix",
            "cosmosvalconspub",
        )
        (self.home / "audit").mkdir(mode=0o700, exist_ok=True)

    @property
    def config_path(self) -> Path:
        return self.home / "tmkms.toml"

    @property
    def identity_key(self) -> Path:
        return self.home / "secrets" / "kms-identity.key"

    @property
    def state_file(self) -> Path:
        return self.home / "state" / f"{self.chain_id}.json"

    @property
    def audit_log(self) -> Path:
        return self.home / "audit" / f"{self.chain_id}.jsonl"

    @property
    def password_file(self) -> Path:
        return self.home / "secrets" / "hsm-password"

    def peer_id(self) -> str:
        """kms's libp2p peer ID, as `kms ident show` prints it (for noise:// allowlists)."""
        out = kms_cli("ident", "show", "--key", str(self.identity_key))
        m = re.search(r"libp2p peer ID:\s+(12D3KooW\w+)", out)
        if m is None:
            raise KmsCliError(f"kms ident show printed no peer ID:\n{out}")
        return m.group(1)

    def add_validator(self, addr: str, protocol_version: str) -> None:
        self.validators.append(ValidatorEntry(addr, protocol_version))

    def use_softsign(self, priv_validator_key: Path) -> None:
        """Copy a priv_validator_key.json into the home's secrets (0600) and sign with it."""
        dest = self.home / "secrets" / f"{self.chain_id}-priv_validator_key.json"
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(priv_validator_key.read_bytes())
        self.softsign_key = dest

    def use_hsms(self, hsms: Sequence[HsmSim]) -> None:
        self.hsms = list(hsms)
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(HSM_PASSWORD + "\n")

    def render_config(self) -> str:
        q = json.dumps
        out = [
            "[[chain]]",
            f"id = {q(self.chain_id)}",
            'key_format = { type = "bech32", account_key_prefix = "cosmospub",'
            ' consensus_key_prefix = "cosmosvalconspub" }',
            f"state_file = {q(str(self.state_file))}",
            f"audit_log = {q(str(self.audit_log))}",
            f"sign_extensions = {'true' if self.sign_extensions else 'false'}",
            "",
        ]
        for v in self.validators:
            out += [
                "[[validator]]",
                f"chain_id = {q(self.chain_id)}",
                f"addr = {q(v.addr)}",
                *(
                    [f"secret_key = {q(str(self.identity_key))}"]
                    if v.addr.startswith(("tcp:", "noise:"))
                    else []
                ),
                f"protocol_version = {q(v.protocol_version)}",
                "reconnect = true",
                "",
            ]
        if self.softsign_key is not None:
            out += [
                "[[providers.softsign]]",
                f"chain_ids = [{q(self.chain_id)}]",
                'key_type = "consensus"',
                'key_format = "json"',
                f"path = {q(str(self.softsign_key))}",
                "",
            ]
        for hsm in self.hsms:
            out += [
                "[[providers.yubihsm]]",
                f'adapter = {{ type = "http", addr = {q(hsm.addr)} }}',
                f"auth = {{ key = 1, password_file = {q(str(self.password_file))} }}",
                f"keys = [{{ chain_ids = [{q(self.chain_id)}], key = 1 }}]",
                "",
            ]
        return "\n".join(out) + "\n" + self.extra_toml

    def write_config(self) -> Path:
        text = self.render_config()
        tmp = self.config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        tmp.replace(self.config_path)
        return self.config_path

    def import_hsm_key(self, priv_validator_key: Path, key_id: int = 1) -> str:
        """`kms import -c CONFIG --key-id ID FILE`: the key into every configured replica."""
        self.write_config()
        return kms_cli(
            "import", "-c", str(self.config_path), "--key-id", str(key_id), str(priv_validator_key)
        )

    def state_import(self, source: Path) -> str:
        """`kms state import STATE --from SOURCE` (a CometBFT or kms/tmkms state file)."""
        return kms_cli("state", "import", str(self.state_file), "--from", str(source))

    def state_show(self) -> dict[str, Any]:
        """`kms state show STATE --json`."""
        doc: dict[str, Any] = json.loads(kms_cli("state", "show", str(self.state_file), "--json"))
        return doc

    def state_set(self, height: int, round_: int, step: str) -> str:
        """`kms state set STATE --height H --round R --step S` (creates or raises the mark)."""
        return kms_cli(
            "state",
            "set",
            str(self.state_file),
            "--height",
            str(height),
            "--round",
            str(round_),
            "--step",
            step,
        )

    def read_state(self) -> tuple[int, int, int]:
        """The watermark, read the way kms reads it (format 1 or 2)."""
        s = StateStore(self.state_file).load()
        return s.height, s.round, s.step

    # -- process ----------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """`kms start`, returning once it has logged "kms started" (config loaded, links
        dialing): a node waits only 3 s for its signer at start-up, kms redials within 1 s."""
        self.write_config()
        self._spawn([*KMS, "start", "-c", str(self.config_path), "--log-format", "json"])
        deadline = time.monotonic() + timeout
        while sum(e.get("msg") == "kms started" for e in self.log_events()) < self.starts:
            self.assert_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.host_name} did not start\n{self.describe()}")
            time.sleep(0.1)

    def log_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    def audit_entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.audit_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by kill -9
        return out


# --- watching the state file -------------------------------------------------------------


class StateWatcher(Poller):
    """Polls a state file and remembers every (height, round, step) it saw, in order.

    A regression (a later reading lower than an earlier one) is recorded, never ignored.
    Unreadable moments are skipped. It reads the file the way kms does (format 2: a
    slot being rewritten reads as the previous one), without taking the lock.
    """

    def __init__(self, path: Path, interval: float = 0.05) -> None:
        super().__init__("state-watcher", interval)
        self.path = path
        self.seen: list[tuple[int, int, int]] = []
        self.regressions: list[tuple[tuple[int, int, int], tuple[int, int, int]]] = []

    def _read(self) -> tuple[int, int, int] | None:
        try:
            return StateStore(self.path).load().hrs
        except StateFileError:
            return None

    def poll(self) -> None:
        hrs = self._read()
        if hrs is not None:
            if self.seen and hrs < self.seen[-1]:
                self.regressions.append((self.seen[-1], hrs))
            if not self.seen or hrs != self.seen[-1]:
                self.seen.append(hrs)

    def describe(self) -> str:
        return f"--- state watcher {self.path}: {len(self.seen)} readings, last {self.seen[-3:]}"


def conflicting_signatures(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Pairs of audit-log signatures at the same (height, round, step) for different blocks."""
    first: dict[tuple[str, str, int], dict[str, Any]] = {}
    problems: list[str] = []
    for e in entries:
        if e.get("outcome") not in ("signed", "reused"):
            continue
        key = (str(e["height"]), str(e["round"]), int(e["step"]))
        if key in first:
            if first[key].get("block_id") != e.get("block_id"):
                problems.append(f"{key}: {first[key].get('block_id')} vs {e.get('block_id')}")
        else:
            first[key] = e
    return problems
