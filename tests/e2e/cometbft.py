"""Real CometBFT nodes for the end-to-end tests: find the binaries, make homes, run, poll.

Owns: discovering the binaries `scripts/install-cometbft` installed, creating node homes
(`cometbft init`, config.toml and genesis edits), starting and killing node processes (each in
its own process group, always cleaned up by the caller's finalizer), free loopback ports, and
reading the node's JSON-RPC (/status, /block, /commit, /validators). Never touches kms: the
signer side lives in `tests.e2e.kmsproc`, signature checks in `tests.e2e.verify`.

Everything runs on 127.0.0.1. Node logs stay in the node's home so a failing test can show them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

S = TypeVar("S", bound="Stoppable")

INSTALL_HINT = "install them with `scripts/install-cometbft` (needs Go >= 1.25)"
DEFAULT_ROOT = Path.home() / ".cache" / "kms" / "cometbft"
KNOWN_LINES = ("v0.34", "v0.37", "v0.38", "v0.39", "v0.40", "v1.0")
NOISE_LINES = ("v0.40",)  # lines whose priv_validator_laddr accepts noise://

# line -> (kms protocol_version, genesis path of vote_extensions_enable_height or None)
_LINE_TABLE: dict[str, tuple[str, tuple[str, str] | None]] = {
    "v0.34": ("v0.34", None),
    "v0.37": ("v0.37", None),
    "v0.38": ("v0.38", ("abci", "vote_extensions_enable_height")),
    "v0.39": ("v0.38", ("abci", "vote_extensions_enable_height")),
    "v0.40": ("v0.40", ("abci", "vote_extensions_enable_height")),
    "v1.0": ("v1", ("feature", "vote_extensions_enable_height")),
}

# Fast consensus for tests. Keys present in every supported line's [consensus] section.
FAST_CONSENSUS: dict[str, str] = {
    "timeout_propose": "1s",
    "timeout_propose_delta": "200ms",
    "timeout_prevote": "300ms",
    "timeout_prevote_delta": "100ms",
    "timeout_precommit": "300ms",
    "timeout_precommit_delta": "100ms",
    "timeout_commit": "250ms",
}


def root_dir() -> Path:
    return Path(os.environ.get("KMS_COMETBFT_DIR", DEFAULT_ROOT))


@dataclass(frozen=True, slots=True)
class CometBFT:
    """One installed cometbft binary (one release line)."""

    line: str  # "v0.38"
    tag: str  # "v0.38.26"
    binary: Path

    @property
    def protocol_version(self) -> str:
        """The kms `protocol_version` this node speaks."""
        return _LINE_TABLE[self.line][0]

    @property
    def vote_extensions_param(self) -> tuple[str, str] | None:
        """(section, key) of vote_extensions_enable_height in the genesis consensus params."""
        return _LINE_TABLE[self.line][1]

    @property
    def has_vote_extensions(self) -> bool:
        return self.vote_extensions_param is not None

    @property
    def has_noise(self) -> bool:
        return self.line in NOISE_LINES

    def __str__(self) -> str:
        return f"cometbft {self.tag}"


def discover(root: Path | None = None) -> list[CometBFT]:
    """Installed lines under `root` (each `<line>/cometbft` + `<line>/VERSION`), sorted by line.

    `KMS_E2E_LINES` (space or comma separated, e.g. "v0.38 v1.0") narrows the selection.
    """
    base = root or root_dir()
    wanted_env = os.environ.get("KMS_E2E_LINES", "").replace(",", " ").split()
    found: list[CometBFT] = []
    if not base.is_dir():
        return found
    for d in sorted(base.iterdir()):
        binary, version = d / "cometbft", d / "VERSION"
        if d.name not in _LINE_TABLE or not (binary.is_file() and os.access(binary, os.X_OK)):
            continue
        if wanted_env and d.name not in wanted_env:
            continue
        tag = version.read_text().splitlines()[0].strip() if version.is_file() else d.name
        found.append(CometBFT(d.name, tag, binary))
    return sorted(found, key=lambda c: _line_key(c.line))


def _line_key(line: str) -> tuple[int, ...]:
    return tuple(int(p) for p in line.lstrip("v").split("."))


# --- cleanup --------------------------------------------------------------------------------


class Stoppable(Protocol):
    def stop(self, sig: int = ..., timeout: float = ...) -> int | None: ...

    def describe(self) -> str: ...


class Procs:
    """Everything a test started; all of it is stopped in the finalizer, failing or not."""

    def __init__(self) -> None:
        self.items: list[Stoppable] = []

    def add(self, item: S) -> S:
        self.items.append(item)
        return item

    def stop_all(self) -> None:
        """Nodes first, then everything else in reverse order of creation.

        A node whose remote signer is already gone does not exit on SIGTERM (v0.34.35,
        v0.37.18, v0.38.26, v1.0.1 waited > 30 s; v0.40.0 exits in ~2.5 s), so stopping the
        signer first would cost every test the SIGKILL escalation delay.
        """
        nodes = [i for i in self.items if isinstance(i, Node)]
        others = [i for i in reversed(self.items) if not isinstance(i, Node)]
        for item in [*nodes, *others]:
            try:
                item.stop()
            except Exception as e:  # cleanup must go on
                print(f"cleanup of {item!r} failed: {e}")

    def describe(self) -> str:
        return "\n\n".join(item.describe() for item in self.items)


# --- ports ------------------------------------------------------------------------------

_ports_lock = threading.Lock()
_ports_used: set[int] = set()
_port_rng = random.Random()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback TCP port that was free a moment ago and not handed out before in this run.

    Drawn below the kernel's ephemeral range: a port the kernel hands out for an outbound
    connection or a bind to port 0 (any other test, kms dialing, the nodes' own peers)
    can never be the one a node is about to listen on.
    """
    low = max(_ephemeral_low(), 21000)
    with _ports_lock:
        for _ in range(200):
            port = _port_rng.randrange(20000, low)
            if port in _ports_used:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _ports_used.add(port)
            return port
    raise RuntimeError("no free loopback port found")


# --- config.toml editing ------------------------------------------------------------------


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    raise TypeError(f"unsupported TOML value {v!r}")


def edit_toml(text: str, changes: Mapping[str, Mapping[str, object]]) -> str:
    """Set `section.key = value` in a TOML file written by `cometbft init`, keeping comments.

    Section "" is the top level. Every key must already exist (a typo or a key that a
    version renamed is an error, not a silently ignored line).
    """
    pending = {(sec, key): val for sec, kv in changes.items() for key, val in kv.items()}
    out: list[str] = []
    section = ""
    header = re.compile(r"^\s*\[([A-Za-z0-9_.\-]+)\]\s*$")
    assign = re.compile(r"^(\s*)([A-Za-z0-9_\-]+)(\s*=\s*)(.*)$")
    for line in text.splitlines():
        m = header.match(line)
        if m:
            section = m.group(1)
        else:
            a = assign.match(line)
            if a and (section, a.group(2)) in pending:
                value = pending.pop((section, a.group(2)))
                line = f"{a.group(1)}{a.group(2)}{a.group(3)}{toml_value(value)}"
        out.append(line)
    if pending:
        missing = ", ".join(f"[{s}] {k}" for s, k in pending)
        raise KeyError(f"config.toml has no {missing}")
    return "\n".join(out) + "\n"


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidatorKey:
    """A priv_validator_key.json as written by `cometbft init`."""

    path: Path
    public_key: bytes
    address: str  # upper-case hex, as the RPC prints it

    @classmethod
    def load(cls, path: Path) -> ValidatorKey:
        doc = json.loads(path.read_text())
        pub = base64.b64decode(doc["pub_key"]["value"])
        return cls(path, pub, validator_address(pub))


def validator_address(public_key: bytes) -> str:
    return hashlib.sha256(public_key).digest()[:20].hex().upper()


# --- nodes ----------------------------------------------------------------------------------


def run_tool(
    argv: Sequence[str],
    what: str,
    *,
    timeout: float,
    cwd: Path | None = None,
    error: type[RuntimeError] = RuntimeError,
) -> str:
    """Run one command-line tool to completion; its stdout, or `error` naming `what` with the
    exit code and the tail of what it printed."""
    res = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )
    if res.returncode != 0:
        raise error(f"{what} exited {res.returncode}:\n{res.stderr[-3000:]}{res.stdout[-1000:]}")
    return res.stdout


class RpcError(RuntimeError):
    pass


class NodeExited(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Ports:
    p2p: int
    rpc: int

    @classmethod
    def allocate(cls) -> Ports:
        return cls(free_port(), free_port())


class Node:
    """One cometbft node: a home directory and, while running, a process group."""

    def __init__(self, binary: CometBFT, home: Path, name: str = "node") -> None:
        self.binary = binary
        self.home = home
        self.name = name
        self.ports = Ports.allocate()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "node.log"
        self.starts = 0
        self.proxy_app = "kvstore"  # or an ABCI address such as E2EApp.addr

    # -- home ------------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 60) -> str:
        argv = [str(self.binary.binary), *args, "--home", str(self.home)]
        return run_tool(argv, f"{self.binary} {' '.join(args)}", timeout=timeout)

    def init(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.run("init")

    @property
    def config_path(self) -> Path:
        return self.home / "config" / "config.toml"

    @property
    def genesis_path(self) -> Path:
        return self.home / "config" / "genesis.json"

    @property
    def key_path(self) -> Path:
        return self.home / "config" / "priv_validator_key.json"

    @property
    def state_path(self) -> Path:
        return self.home / "data" / "priv_validator_state.json"

    def node_id(self) -> str:
        return self.run("show-node-id").strip()

    def libp2p_id(self) -> str:
        """The node's libp2p peer ID (`show-node-id --libp2p`, v0.40+): what kms pins."""
        return self.run("show-node-id", "--libp2p").strip()

    def validator_key(self) -> ValidatorKey:
        return ValidatorKey.load(self.key_path)

    def configure(
        self,
        *,
        priv_validator_laddr: str = "",
        persistent_peers: str = "",
        extra: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        changes: dict[str, dict[str, object]] = {
            "": {
                "moniker": self.name,
                "priv_validator_laddr": priv_validator_laddr,
                "log_level": "info",
            },
            "rpc": {"laddr": f"tcp://127.0.0.1:{self.ports.rpc}"},
            "p2p": {
                "laddr": f"tcp://127.0.0.1:{self.ports.p2p}",
                "persistent_peers": persistent_peers,
                "addr_book_strict": False,
                "allow_duplicate_ip": True,
                "pex": bool(persistent_peers),
            },
            "consensus": dict(FAST_CONSENSUS),
        }
        for sec, kv in (extra or {}).items():
            changes.setdefault(sec, {}).update(kv)
        self.config_path.write_text(edit_toml(self.config_path.read_text(), changes))

    def genesis(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.genesis_path.read_text())
        return doc

    def write_genesis(self, doc: Mapping[str, Any]) -> None:
        self.genesis_path.write_text(json.dumps(doc, indent=2) + "\n")

    @property
    def chain_id(self) -> str:
        return str(self.genesis()["chain_id"])

    def p2p_address(self) -> str:
        return f"{self.node_id()}@127.0.0.1:{self.ports.p2p}"

    # -- process -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} already running")
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts} at {time.time():.3f} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    str(self.binary.binary),
                    "start",
                    "--home",
                    str(self.home),
                    f"--proxy_app={self.proxy_app}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        """Signal the node's process group and wait; escalates to SIGKILL. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            signal_group(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait(10)
        signal_group(proc.pid, signal.SIGKILL)  # stragglers in the group, if any
        return proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        return f"--- {self.name} ({self.binary}, home {self.home}) log tail ---\n{self.log_tail()}"

    # -- RPC ---------------------------------------------------------------------------------

    def rpc(self, method: str, timeout: float = 3.0, **params: object) -> dict[str, Any]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"http://127.0.0.1:{self.ports.rpc}/{method}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            doc = json.loads(e.read() or b"{}")
        except (OSError, ValueError) as e:
            raise RpcError(f"{self.name}: {url}: {e}") from e
        if doc.get("error"):
            raise RpcError(f"{self.name}: {url}: {doc['error']}")
        result: dict[str, Any] = doc["result"]
        return result

    def height(self) -> int:
        """The latest committed height, or 0 while the RPC is not up."""
        try:
            st = self.rpc("status", timeout=1.0)
        except RpcError:
            return 0
        return int(st["sync_info"]["latest_block_height"])

    def block(self, height: int) -> dict[str, Any]:
        return self.rpc("block", height=height)

    def commit(self, height: int) -> dict[str, Any]:
        return self.rpc("commit", height=height)

    def validators(self, height: int) -> list[dict[str, Any]]:
        vals: list[dict[str, Any]] = self.rpc("validators", height=height, per_page=100)[
            "validators"
        ]
        return vals

    def wait_for_height(
        self,
        height: int,
        timeout: float,
        *,
        also_alive: Iterable[Callable[[], None]] = (),
    ) -> float:
        """Poll until the node has committed `height`; returns the seconds it took.

        Fails early (NodeExited) when the node process dies; `also_alive` callables may raise
        to abort too (e.g. a dead kms process).
        """
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise NodeExited(
                    f"{self.name} exited with {self.proc.returncode} before height {height}\n"
                    + self.describe()
                )
            for check in also_alive:
                check()
            h = self.height()
            if h >= height:
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} reached height {h}, not {height}, within {timeout:.0f}s\n"
                    + self.describe()
                )
            time.sleep(0.2)


class Poller:
    """A daemon thread that calls `poll()` every `interval` seconds until `stop()`.

    `stop` has the signature of a process's, so pollers go into `Procs` and are stopped
    with everything else in cleanup.
    """

    def __init__(self, name: str, interval: float = 0.05) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def poll(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, sig: int = 0, timeout: float = 5) -> int | None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return None


class HeightClock(Poller):
    """Polls a node's height every 50 ms and remembers when each height was first seen.

    Block header times are not wall-clock time (v0.34 forces at least `time_iota_ms` = 1 s
    between blocks), so delays are measured here, on our clock.
    """

    def __init__(self, node: Node, interval: float = 0.05) -> None:
        super().__init__(f"clock-{node.name}", interval)
        self.node = node
        self.first_seen: dict[int, float] = {}

    def poll(self) -> None:
        h = self.node.height()
        if h and h not in self.first_seen:
            self.first_seen[h] = time.monotonic()

    def intervals(self) -> dict[int, float]:
        """Height -> seconds since the previous height was first seen (when both were)."""
        seen = self.first_seen
        return {h: seen[h] - seen[h - 1] for h in sorted(seen) if h - 1 in seen}

    def describe(self) -> str:
        return f"--- height clock of {self.node.name}: {len(self.first_seen)} heights seen"


class E2EApp:
    """The line's own e2e test application (`e2e-app`, built by scripts/install-cometbft from
    test/e2e/node) as a socket ABCI server on loopback tcp: unlike kvstore it makes vote
    extensions, of `vote_extension_size` random bytes each."""

    def __init__(
        self,
        binary: CometBFT,
        directory: Path,
        chain_id: str,
        *,
        vote_extension_size: int,
        vote_extensions_enable_height: int,
    ) -> None:
        self.path = binary.binary.parent / "e2e-app"
        self.dir = directory
        self.chain_id = chain_id
        self.port = free_port()
        self.vote_extension_size = vote_extension_size
        # the app re-applies this at InitChain (update height 0): keep it equal to the genesis
        self.enable_height = vote_extensions_enable_height
        self.log_path = directory / "e2e-app.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def available(self) -> bool:
        return self.path.is_file() and os.access(self.path, os.X_OK)

    @property
    def addr(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "app.toml"
        cfg.write_text(
            f"chain_id = {toml_value(self.chain_id)}\n"
            f"listen = {toml_value(self.addr)}\n"
            'protocol = "socket"\n'
            f"dir = {toml_value(str(self.dir / 'data'))}\n"
            "persist_interval = 1\n"
            f"vote_extension_size = {self.vote_extension_size}\n"
            f"vote_extensions_enable_height = {self.enable_height}\n"
            "vote_extensions_update_height = 0\n"
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.path), str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"e2e app exited with {self.proc.returncode}\n{self.describe()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.1)
        raise TimeoutError(f"e2e app not listening on {self.addr}\n{self.describe()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        signal_group(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait(10)
        return proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        tail = "\n".join(self.log_text().splitlines()[-40:])
        return f"--- e2e app ({self.path}) log tail ---\n{tail}"


def signal_group(pid: int, sig: int) -> None:
    """Signal the process group led by `pid` (each harness process leads its own); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# --- genesis helpers ----------------------------------------------------------------------


def set_vote_extensions(genesis: dict[str, Any], binary: CometBFT, enable_height: int) -> None:
    """Enable vote extensions from `enable_height` (0 disables) in the genesis params.

    The node must already have written the parameter's section (checked: a version that
    renamed it fails here instead of silently running without extensions).
    """
    param = binary.vote_extensions_param
    if param is None:
        raise ValueError(f"{binary} has no vote extensions")
    section, key = param
    params = genesis.setdefault("consensus_params", {})
    if section not in params or key not in params[section]:
        raise KeyError(
            f"{binary}: genesis consensus_params has no {section}.{key}: {json.dumps(params)[:400]}"
        )
    params[section][key] = str(enable_height)


def shared_genesis(
    template: Mapping[str, Any], chain_id: str, keys: Iterable[tuple[str, ValidatorKey, int]]
) -> dict[str, Any]:
    """A genesis for several validators (name, key, power), based on one node's genesis."""
    doc: dict[str, Any] = json.loads(json.dumps(template))
    doc["chain_id"] = chain_id
    doc["validators"] = [
        {
            "address": key.address,
            "pub_key": {
                "type": "tendermint/PubKeyEd25519",
                "value": base64.b64encode(key.public_key).decode(),
            },
            "power": str(power),
            "name": name,
        }
        for name, key, power in keys
    ]
    return doc
