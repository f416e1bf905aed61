"""Two nodes, one key: kms serves one validator's key to two nodes at once (active-active).

A 4-validator network on loopback: three validators sign with their own key files, the
fourth ("ours") is run by two nodes that both use kms as their signer. Both nodes ask
kms to sign the same votes; kms must sign each (height, round, step) for one block
only, so no block may ever carry duplicate-vote evidence, and the chain keeps going.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from .cometbft import CometBFT, Node, Procs
from .kmsproc import conflicting_signatures
from .results import Result
from .scenarios import network, new_kms_host, signer_laddr
from .verify import check_commits, evidence_in

pytestmark = pytest.mark.e2e

BLOCKS = 20


def test_one_key_on_two_nodes_never_double_signs(
    cometbft: CometBFT,
    make_node: Callable[[str], Node],
    procs: Procs,
    tmp_path: Path,
    record: Result,
) -> None:
    record.scenario = "two-nodes-one-key"
    record.transport, record.signer = "tcp", "softsign"
    laddrs = {name: signer_laddr(procs, "tcp") for name in ("ours-a", "ours-b")}
    net = network(
        cometbft,
        make_node,
        tmp_path,
        own_key={"v1": 10, "v2": 10, "v3": 10},
        remote={"ours-a": ("ours", 10), "ours-b": ("ours", 10)},
        remote_laddrs=laddrs,
    )
    ours = net.keys["ours"]
    kms = new_kms_host(tmp_path, procs, "kms", net.chain_id)
    for laddr in laddrs.values():
        kms.add_validator(laddr, cometbft.protocol_version)
    kms.state_import(net.node("ours-a").state_path)
    kms.use_softsign(ours.path)
    kms.start()
    net.start()
    net.wait(BLOCKS + 1, timeout=150, alive=[kms.assert_alive])
    # Evidence is committed a block or two after it is seen: look a little further.
    watcher = net.node("v1")
    watcher.wait_for_height(BLOCKS + 4, timeout=60, also_alive=[kms.assert_alive])
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
    for node in net.nodes:
        evidence = evidence_in(node, range(1, min(last, node.height()) + 1))
        assert evidence == [], f"{node.name}: {evidence}"
    assert conflicting_signatures(kms.audit_entries()) == []
