"""Two nodes, one key: kms serves one validator's key to two nodes at once (active-active).

A 4-validator network on loopback: three validators sign with their own key files, the
fourth ("ours") is run by two nodes that both use kms as their signer. Both nodes ask
kms to sign the same votes, and (fed different transactions) propose different blocks
when "ours" is the proposer; kms must sign each (height, round, step) for one block
only, so no block may ever carry duplicate-vote evidence, and the chain keeps going.
The control test runs the same network with the key file copied to both nodes instead
of kms, and the evidence check must then find the double sign.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from .cometbft import CometBFT, Node, Procs, RpcError, edit_toml
from .kmsproc import conflicting_signatures
from .results import Result
from .scenarios import Network, network, new_kms_host, signer_laddr
from .verify import Evidence, check_commits, evidence_in

pytestmark = pytest.mark.e2e

BLOCKS = 20


def diverge(a: Node, b: Node) -> None:
    """Make the two nodes sharing a key propose different blocks at the same height.

    Identical empty blocks would give identical votes (v0.34 takes block times from the
    last commit, not the clock), which never tests a conflict. With mempool gossip off on
    both, transactions sent to `a` (see `send_tx`) stay in `a`'s proposals only.
    """
    for node in (a, b):
        node.config_path.write_text(
            edit_toml(node.config_path.read_text(), {"mempool": {"broadcast": False}})
        )


def node_pair_network(
    cometbft: CometBFT, make_node: Callable[[str], Node], procs: Procs, tmp_path: Path
) -> tuple[Network, dict[str, str]]:
    """A 4-validator net whose validator "ours" runs on two nodes (ours-a, ours-b) that
    propose different blocks; each node has its own signer address (returned by name)."""
    laddrs = {name: signer_laddr(procs, "tcp") for name in ("ours-a", "ours-b")}
    net = network(
        cometbft,
        make_node,
        tmp_path,
        own_key={"v1": 10, "v2": 10, "v3": 10},
        remote={"ours-a": ("ours", 10), "ours-b": ("ours", 10)},
        remote_laddrs=laddrs,
    )
    diverge(net.node("ours-a"), net.node("ours-b"))
    return net, laddrs


def send_tx(node: Node, n: int) -> None:
    with contextlib.suppress(RpcError):
        node.rpc("broadcast_tx_async", tx=f'"k{n}=v{n}"')


def feed_until(
    node: Node, watcher: Node, height: int, timeout: float, alive: Callable[[], None]
) -> None:
    """Keep sending transactions to `node` until `watcher` has committed `height`."""
    deadline, n = time.monotonic() + timeout, 0
    while watcher.height() < height:
        assert time.monotonic() < deadline, f"{watcher.name} stuck at {watcher.height()}"
        alive()
        n += 1
        send_tx(node, n)
        time.sleep(0.2)


def test_one_key_on_two_nodes_never_double_signs(
    cometbft: CometBFT,
    make_node: Callable[[str], Node],
    procs: Procs,
    tmp_path: Path,
    record: Result,
) -> None:
    record.scenario = "two-nodes-one-key"
    record.transport, record.signer = "tcp", "softsign"
    net, laddrs = node_pair_network(cometbft, make_node, procs, tmp_path)
    ours, ours_a = net.keys["ours"], net.node("ours-a")
    kms = new_kms_host(tmp_path, procs, "kms", net.chain_id)
    for laddr in laddrs.values():
        kms.add_validator(laddr, cometbft.protocol_version)
    kms.state_import(ours_a.state_path)
    kms.use_softsign(ours.path)
    kms.start()
    net.start()
    watcher = net.node("v1")
    # Evidence is committed a block or two after it is seen: run a little further.
    feed_until(ours_a, watcher, BLOCKS + 4, timeout=150, alive=kms.assert_alive)
    net.wait(BLOCKS + 1, timeout=60, alive=[kms.assert_alive])
    last = watcher.height()

    report = check_commits(
        watcher, range(1, BLOCKS + 1), net.chain_id, ours.public_key, ours.address
    )
    links = Counter(
        str(e.get("link")) for e in kms.log_events() if e.get("msg") in ("signed", "reused")
    )
    record.blocks = BLOCKS
    record.notes.update(
        {
            "our_signatures_in_commits": len(report.signed),
            "answers_by_link": dict(links),
            "audit_outcomes": dict(Counter(e["outcome"] for e in kms.audit_entries())),
        }
    )
    assert not report.bad, report.summary()
    assert len(report.signed) >= BLOCKS // 2, report.summary()
    assert set(links) == set(laddrs.values()), f"both nodes must be served: {links}"
    # The two nodes asked for conflicting signatures (different proposals) and kms refused.
    refusals = [e for e in kms.audit_entries() if e["outcome"] == "refused"]
    assert refusals, "the nodes never disagreed: this run did not test double-sign protection"
    for node in net.nodes:
        evidence = evidence_in(node, range(1, min(last, node.height()) + 1))
        assert evidence == [], f"{node.name}: {evidence}"
    assert conflicting_signatures(kms.audit_entries()) == []


def test_evidence_check_sees_a_real_double_sign(
    cometbft: CometBFT,
    make_node: Callable[[str], Node],
    procs: Procs,
    tmp_path: Path,
    record: Result,
) -> None:
    """Control for the test above: the same network, but the two nodes sharing the key
    each sign with a copy of the key file (no kms). They double-sign when they propose
    different blocks, and the evidence check must find it in a committed block."""
    record.scenario = "negative-copied-key-double-signs"
    record.transport, record.signer = "own-key", "key file copied to two nodes"
    net = network(
        cometbft,
        make_node,
        tmp_path,
        own_key={"v1": 10, "v2": 10, "v3": 10},
        remote={"twin-a": ("twin", 10), "twin-b": ("twin", 10)},
        remote_laddrs={},
    )
    twin = net.keys["twin"]
    twin_a = net.node("twin-a")
    diverge(twin_a, net.node("twin-b"))
    net.start()
    watcher = net.node("v1")
    found: list[Evidence] = []
    checked, deadline = 0, time.monotonic() + 90
    n = 0
    while not found:
        assert time.monotonic() < deadline, f"no evidence in {checked} blocks"
        n += 1
        send_tx(twin_a, n)
        top = watcher.height()
        found = [e for e in evidence_in(watcher, range(checked + 1, top + 1)) if e.addresses]
        checked = max(checked, top)
        time.sleep(0.5)
    record.notes["evidence_at_height"] = found[0].height
    record.notes["evidence_type"] = found[0].type
    record.blocks = checked
    assert twin.address in found[0].addresses, found[0].raw
