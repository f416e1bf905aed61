"""Migration: move the signer from host A to host B, carrying the double-sign watermark.

A 3-validator network where "ours" has enough power to matter but not to halt the chain
when it is absent (10 + 10 + 5: the two others make > 2/3). The operator's story from
DESIGN.md §1: stop kms on host A, let a block pass, carry the watermark to host B (with
`kms state import` of A's file, or `kms state show` on A + `kms state set` on B), start
kms there. Host B must resume signing within a few blocks,
never below A's watermark, and no block may carry evidence.
"""

from __future__ import annotations

import time

import pytest

from .scenarios import Rig, longest_run, network, signer_laddr
from .verify import FLAG_COMMIT, check_commit, check_commits, evidence_in

pytestmark = pytest.mark.e2e

MAX_GAP = 6  # blocks without our signature around the hand-over


@pytest.mark.parametrize("carry", ["import", "set"])
def test_migration_to_another_host_with_the_watermark_carried(rig: Rig, carry: str) -> None:
    rig.describe(f"migration-{carry}", "tcp", "softsign")
    laddr = signer_laddr(rig.procs, "tcp")
    net = network(
        rig,
        own_key={"v1": 10, "v2": 10},
        remote={"ours": ("ours", 5)},
        remote_laddrs={"ours": laddr},
    )
    key = net.keys["ours"]
    node, watcher = net.node("ours"), net.node("v1")

    host_a = rig.softsign_host("host-a", net.chain_id, [laddr], node, key)
    host_a.start()
    net.start()
    net.wait(8, timeout=90, alive=[host_a.assert_alive])
    early = check_commits(watcher, range(2, 8), net.chain_id, key.public_key, key.address)
    assert len(early.signed) >= 3, "host A must be signing before the move: " + early.summary()

    # 0. host B is prepared ahead, as an operator would: its own home, key and identity
    host_b = rig.kms_host("host-b", net.chain_id)
    host_b.add_validator(laddr, rig.cometbft.protocol_version)
    host_b.use_softsign(key.path)
    # 1. stop host A
    host_a.stop()
    stopped_at = watcher.height()
    a_state = host_a.read_state()
    # 2. let a block pass without us
    watcher.wait_for_height(stopped_at + 2, timeout=30)
    # 3. carry the watermark to host B
    if carry == "import":  # copy A's state file over and import it
        host_b.state_import(host_a.state_file)
    else:  # read A's watermark and type it in on B
        shown = host_a.state_show()
        host_b.state_set(shown["height"], shown["round"], shown["step_name"])
    assert host_b.read_state() == a_state
    # 4. start host B and wait until our signature is back in a commit
    t0 = time.monotonic()
    host_b.start()
    back_at = 0
    while back_at == 0:
        assert time.monotonic() - t0 < 60, "host B never signed a committed block"
        host_b.assert_alive()
        top = watcher.height()
        for h in range(stopped_at + 1, top):
            if (
                check_commit(watcher, h, net.chain_id, key.public_key, key.address).flag
                == FLAG_COMMIT
            ):
                back_at = h
                break
        time.sleep(0.3)
    watcher.wait_for_height(back_at + 4, timeout=30)
    last = watcher.height() - 1

    report = check_commits(watcher, range(1, last + 1), net.chain_id, key.public_key, key.address)
    missing_after_start = [h for h in report.missing if h > 3]
    gap = longest_run(missing_after_start)
    b_state = host_b.read_state()
    rig.record.blocks = last
    rig.record.notes.update(
        {
            "stopped_at": stopped_at,
            "signing_again_at": back_at,
            "longest_gap_blocks": gap,
            "seconds_to_resume": round(time.monotonic() - t0, 1),
        }
    )
    assert not report.bad, report.summary()
    assert gap <= MAX_GAP, report.summary()
    assert b_state > a_state, (a_state, b_state)
    for n in net.nodes:
        assert evidence_in(n, range(1, min(last, n.height()) + 1)) == [], n.name
