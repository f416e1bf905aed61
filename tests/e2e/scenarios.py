"""Building blocks the end-to-end tests share: chains whose validator key lives in kms.

Owns: the `Rig` every test starts from (its fixtures and result record in one value),
wiring nodes and kms hosts together (genesis, priv_validator_laddr, config, state import,
key import), the multi-validator network, and small measurements on what the chain
committed (gaps, rounds, block intervals, evidence, the highest height reached). Never
asserts: tests decide.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .cometbft import (
    CometBFT,
    Node,
    Procs,
    RpcError,
    ValidatorKey,
    edit_toml,
    free_port,
    set_vote_extensions,
    shared_genesis,
)
from .kmsproc import HsmSim, KmsHost
from .results import Result
from .verify import Evidence, evidence_in


class ShortDir:
    """A short directory under /tmp for unix sockets (sun_path is ~108 bytes); removed after."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="kms-e2e-", dir="/tmp"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 0) -> int | None:
        shutil.rmtree(self.path, ignore_errors=True)
        return None

    def describe(self) -> str:
        return f"--- socket dir {self.path}"


def signer_laddr(procs: Procs, transport: str) -> str:
    """A fresh priv_validator_laddr for the node: tcp on a free port, or a unix socket."""
    if transport == "tcp":
        return f"tcp://127.0.0.1:{free_port()}"
    if transport == "unix":
        d = procs.add(ShortDir())
        return f"unix://{d.path / 'pv.sock'}"
    raise ValueError(transport)


def take_key(node: Node, dest: Path) -> ValidatorKey:
    """Move the node's priv_validator_key.json out of its home: from now on only kms has it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(node.key_path, dest)
    dest.chmod(0o600)
    return ValidatorKey.load(dest)


@dataclass
class Rig:
    """One end-to-end test's fixtures: the cometbft line, the node factory, the registry of
    processes stopped after the test, its scratch directory and its result record."""

    cometbft: CometBFT
    make_node: Callable[[str], Node]
    procs: Procs
    tmp_path: Path
    record: Result

    def describe(
        self, scenario: str, transport: str, signer: str, *, extensions: bool = False
    ) -> None:
        """Name the scenario and its dimensions in the results behind docs/compat.md."""
        r = self.record
        r.scenario, r.transport, r.signer, r.extensions = scenario, transport, signer, extensions

    def kms_host(self, name: str, chain_id: str) -> KmsHost:
        """A new kms home (`kms init`), stopped with everything else after the test."""
        host = self.procs.add(KmsHost(self.tmp_path / f"{name}-home", chain_id, name))
        host.init()
        return host

    def softsign_host(
        self, name: str, chain_id: str, laddrs: Sequence[str], node: Node, key: ValidatorKey
    ) -> KmsHost:
        """A kms host (not started) serving `key` from a file to every address in `laddrs`,
        its watermark imported from `node`'s priv_validator_state.json."""
        host = self.kms_host(name, chain_id)
        for laddr in laddrs:
            host.add_validator(laddr, self.cometbft.protocol_version)
        host.state_import(node.state_path)
        host.use_softsign(key.path)
        return host


def start_hsms(tmp_path: Path, procs: Procs, count: int, latency_ms: int) -> list[HsmSim]:
    sims = [procs.add(HsmSim(tmp_path / "hsm", f"hsm-{i}", latency_ms)) for i in range(count)]
    for sim in sims:
        sim.start()
    return sims


@dataclass
class Solo:
    """A one-validator chain whose only key lives in kms."""

    binary: CometBFT
    node: Node
    kms: KmsHost
    key: ValidatorKey
    laddr: str
    hsms: list[HsmSim] = field(default_factory=list)

    @property
    def chain_id(self) -> str:
        return self.kms.chain_id

    def alive(self) -> list[Callable[[], None]]:
        return [self.kms.assert_alive]

    def wait(self, height: int, timeout: float = 60) -> float:
        return self.node.wait_for_height(height, timeout, also_alive=self.alive())


def solo_chain(
    rig: Rig,
    *,
    transport: str = "tcp",
    hsms: int = 0,
    hsm_latency_ms: int = 0,
    vote_extensions_height: int = 0,
    key_override: Path | None = None,
    start: bool = True,
    noise_pin: str | None = None,
    noise_allow: str | None = None,
) -> Solo:
    """Make (and by default start) a one-validator chain signed by kms.

    `key_override` gives kms a different priv_validator_key.json than the genesis
    validator's (for the negative control). With transport "noise", kms pins the node's
    libp2p peer ID and the node allowlists kms's; `noise_pin` / `noise_allow` replace
    either (negative controls).
    """
    binary, procs, tmp_path = rig.cometbft, rig.procs, rig.tmp_path
    node = rig.make_node("validator")
    if vote_extensions_height:
        genesis = node.genesis()
        set_vote_extensions(genesis, binary, vote_extensions_height)
        node.write_genesis(genesis)
    kms = rig.kms_host("kms", node.chain_id)
    if transport == "noise":
        port = free_port()
        laddr = f"noise://{noise_allow or kms.peer_id()}@127.0.0.1:{port}"
        kms_addr = f"noise://{noise_pin or node.libp2p_id()}@127.0.0.1:{port}"
    else:
        laddr = kms_addr = signer_laddr(procs, transport)
    node.configure(priv_validator_laddr=laddr)
    key = take_key(node, tmp_path / "keys" / "validator.json")
    kms.add_validator(kms_addr, binary.protocol_version)
    kms.state_import(node.state_path)
    signing_key = key_override or key.path
    sims: list[HsmSim] = []
    if hsms:
        sims = start_hsms(tmp_path, procs, hsms, hsm_latency_ms)
        kms.use_hsms(sims)
        kms.import_hsm_key(signing_key)
    else:
        kms.use_softsign(signing_key)
    solo = Solo(binary, node, kms, key, laddr, sims)
    if start:
        kms.start()
        node.start()
    return solo


# --- a network of validators ------------------------------------------------------------


@dataclass
class Network:
    """Validators with their own keys, plus nodes whose validator key is served by kms."""

    nodes: list[Node]
    chain_id: str
    keys: dict[str, ValidatorKey]  # validator name -> key

    def start(self) -> None:
        for n in self.nodes:
            n.start()

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def wait(self, height: int, timeout: float, alive: Sequence[Callable[[], None]] = ()) -> None:
        for n in self.nodes:
            if n.running:
                n.wait_for_height(height, timeout, also_alive=alive)


def network(
    rig: Rig,
    *,
    own_key: dict[str, int],
    remote: dict[str, tuple[str, int]],
    remote_laddrs: dict[str, str],
) -> Network:
    """A network of nodes on loopback, all peered with each other.

    own_key: node name -> voting power, for nodes signing with their own key file.
    remote: node name -> (validator name, power) for nodes whose key kms serves; several
    nodes may name the same validator (they share one key). The key of the first node
    naming a validator is that validator's key; it is moved to tmp_path/keys/<validator>.json.
    remote_laddrs: node name -> priv_validator_laddr. A `remote` node without one signs with
    a plain copy of the validator's key file instead (two such nodes double-sign for real:
    the control that our evidence check can see evidence).
    """
    tmp_path = rig.tmp_path
    nodes = {name: rig.make_node(name) for name in [*own_key, *remote]}
    keys: dict[str, ValidatorKey] = {}
    powers: dict[str, int] = {}
    for name, power in own_key.items():
        keys[name] = nodes[name].validator_key()
        powers[name] = power
    for name, (validator, power) in remote.items():
        if validator not in keys:
            keys[validator] = take_key(nodes[name], tmp_path / "keys" / f"{validator}.json")
            powers[validator] = power
        nodes[name].key_path.unlink(missing_ok=True)
        if name not in remote_laddrs:  # no signer: a plain copy of the key file (FilePV)
            shutil.copy(keys[validator].path, nodes[name].key_path)
    first = next(iter(nodes.values()))
    genesis = shared_genesis(
        first.genesis(), first.chain_id, [(v, keys[v], powers[v]) for v in keys]
    )
    addresses = {name: n.p2p_address() for name, n in nodes.items()}
    for name, n in nodes.items():
        n.write_genesis(genesis)
        peers = ",".join(a for other, a in addresses.items() if other != name)
        n.configure(priv_validator_laddr=remote_laddrs.get(name, ""), persistent_peers=peers)
    return Network(list(nodes.values()), str(genesis["chain_id"]), keys)


def diverge(a: Node, b: Node) -> None:
    """Make two nodes sharing a key propose different blocks at the same height.

    Identical empty blocks would give identical votes (v0.34 takes block times from the
    last commit, not the clock), which never tests a conflict. With mempool gossip off on
    both, transactions sent to `a` (see `send_tx`) stay in `a`'s proposals only.
    """
    for node in (a, b):
        node.config_path.write_text(
            edit_toml(node.config_path.read_text(), {"mempool": {"broadcast": False}})
        )


def send_tx(node: Node, n: int) -> None:
    """Submit the n-th distinct transaction to `node` (ignoring a busy or restarting RPC)."""
    with contextlib.suppress(RpcError):
        node.rpc("broadcast_tx_async", tx=f'"k{n}=v{n}"')


def key_on_two_nodes(
    rig: Rig, validator: str, *, signers: bool = True
) -> tuple[Network, dict[str, str]]:
    """A 4-validator net (v1..v3 with their own keys) whose validator `validator` runs on
    two nodes, `<validator>-a` and `<validator>-b`, that propose different blocks. With
    `signers`, each node has its own signer address (returned by node name); without, both
    sign with a copy of the key file (they double-sign for real: the evidence control)."""
    names = (f"{validator}-a", f"{validator}-b")
    laddrs = {name: signer_laddr(rig.procs, "tcp") for name in names} if signers else {}
    net = network(
        rig,
        own_key={"v1": 10, "v2": 10, "v3": 10},
        remote={name: (validator, 10) for name in names},
        remote_laddrs=laddrs,
    )
    diverge(net.node(names[0]), net.node(names[1]))
    return net, laddrs


# --- measurements -------------------------------------------------------------------------


def commit_rounds(node: Node, heights: Sequence[int]) -> dict[int, int]:
    """Height -> the round its block was committed in (> 0 means a timeout happened)."""
    return {h: int(node.commit(h)["signed_header"]["commit"]["round"]) for h in heights}


def longest_run(heights: Sequence[int]) -> int:
    """The longest run of consecutive integers in `heights` (sorted or not)."""
    best = run = 0
    prev: int | None = None
    for h in sorted(heights):
        run = run + 1 if prev is not None and h == prev + 1 else 1
        best = max(best, run)
        prev = h
    return best


def within(seconds: float, done: Callable[[], bool], interval: float = 0.2) -> bool:
    """Poll `done()` until it holds or `seconds` have passed; whether it held."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def highest_height(node: Node, seconds: float) -> int:
    """The highest height `node` reports over the next `seconds` (0 if none): watching a
    chain that must not move. Stops early when the node exits; an RPC failure while the
    node still runs is raised (a blind watcher would pass a chain that did move)."""
    highest, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline and node.running:
        try:
            highest = max(highest, node.height())
        except Exception:
            if node.running:
                raise
            break
        time.sleep(0.3)
    return highest


def first_evidence(
    watcher: Node, feed: Callable[[int], None], timeout: float
) -> tuple[list[Evidence], int]:
    """Poll `watcher`'s new blocks for duplicate-vote evidence naming validators, calling
    `feed(n)` (n = 1, 2, ...) before each look; the evidence found (empty on timeout) and the
    highest height checked."""
    found: list[Evidence] = []
    checked, n, deadline = 0, 0, time.monotonic() + timeout
    while not found and time.monotonic() < deadline:
        n += 1
        feed(n)
        top = watcher.height()
        found = [e for e in evidence_in(watcher, range(checked + 1, top + 1)) if e.addresses]
        checked = max(checked, top)
        time.sleep(0.5)
    return found, checked
