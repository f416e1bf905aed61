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

import time
from collections import Counter
from collections.abc import Callable

import pytest

from .cometbft import Node
from .kmsproc import conflicting_signatures
from .scenarios import Rig, first_evidence, key_on_two_nodes, send_tx
from .verify import check_commits, evidence_in

pytestmark = pytest.mark.e2e

BLOCKS = 20


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


def test_one_key_on_two_nodes_never_double_signs(rig: Rig) -> None:
    rig.describe("two-nodes-one-key", "tcp", "softsign")
    net, laddrs = key_on_two_nodes(rig, "ours")
    ours, ours_a = net.keys["ours"], net.node("ours-a")
    kms = rig.softsign_host("kms", net.chain_id, list(laddrs.values()), ours_a, ours)
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
    rig.record.blocks = BLOCKS
    rig.record.notes.update(
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


def test_evidence_check_sees_a_real_double_sign(rig: Rig) -> None:
    """Control for the test above: the same network, but the two nodes sharing the key
    each sign with a copy of the key file (no kms). They double-sign when they propose
    different blocks, and the evidence check must find it in a committed block."""
    rig.describe("negative-copied-key-double-signs", "own-key", "key file copied to two nodes")
    net, _ = key_on_two_nodes(rig, "twin", signers=False)
    twin, twin_a = net.keys["twin"], net.node("twin-a")
    net.start()
    found, checked = first_evidence(net.node("v1"), lambda n: send_tx(twin_a, n), timeout=90)
    assert found, f"no evidence in {checked} blocks"
    rig.record.notes["evidence_at_height"] = found[0].height
    rig.record.notes["evidence_type"] = found[0].type
    rig.record.blocks = checked
    assert twin.address in found[0].addresses, found[0].raw
