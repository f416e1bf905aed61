"""CometBFT v0.40 with `priv_validator_laddr = "noise://<kms peer ID>@ip:port"`: kms dials with
libp2p Noise, pins the node's peer ID (`cometbft show-node-id --libp2p`) and signs the chain.

A precommit with a 1 MiB vote extension (v0.40's own e2e app makes them) is signed over
Noise and over SecretConnection.

Negative controls, wired exactly like the passing test except for one identity:
- kms pins another node's peer ID: kms drops the node after message 2 (before sending
  message 3, so before the node even learns who we are), says so in one log line, signs
  nothing; the node never gets its public key and gives up.
- the node allowlists another signer: the handshake completes, the node logs
  `rejecting non-allowlisted signer peer` with our ID and closes; nothing is signed.
"""

from __future__ import annotations

import base64
import re

import pytest

from .cometbft import E2EApp, edit_toml, free_port
from .scenarios import Rig, Solo, highest_height, network, solo_chain, within
from .test_single_validator import chain_commits_blocks_signed_by_us
from .verify import check_commits, evidence_in

pytestmark = [pytest.mark.e2e, pytest.mark.noise]

BLOCKS = 20
WATCH_SECONDS = 8


def test_noise_chain_commits_blocks_signed_by_our_key(rig: Rig) -> None:
    rig.describe("single-softsign-noise", "noise", "softsign")
    solo = solo_chain(rig, transport="noise")
    chain_commits_blocks_signed_by_us(rig, solo, BLOCKS)
    audit = solo.kms.audit_entries()
    assert set(range(1, BLOCKS + 1)) <= {
        int(e["height"]) for e in audit if e["outcome"] == "signed"
    }
    assert [e for e in audit if e["outcome"] in ("refused", "error")] == []
    ups = [e for e in solo.kms.log_events() if e.get("msg") == "link up"]
    assert ups and all(str(e.get("link", "")).startswith("noise://") for e in ups)


def test_noise_validator_in_a_4_validator_network(rig: Rig) -> None:
    """Three validators with their own key files, the fourth signed by kms over Noise."""
    rig.describe("network-4-noise", "noise", "softsign")
    port = free_port()
    net = network(
        rig,
        own_key={"v1": 10, "v2": 10, "v3": 10},
        remote={"ours": ("ours", 10)},
        remote_laddrs={"ours": "tcp://127.0.0.1:1"},  # replaced below: needs kms's peer ID
    )
    ours, key = net.node("ours"), net.keys["ours"]
    kms_addr = f"noise://{ours.libp2p_id()}@127.0.0.1:{port}"
    kms = rig.softsign_host("kms", net.chain_id, [kms_addr], ours, key)
    laddr = f"noise://{kms.peer_id()}@127.0.0.1:{port}"
    ours.config_path.write_text(
        edit_toml(ours.config_path.read_text(), {"": {"priv_validator_laddr": laddr}})
    )
    kms.start()
    net.start()
    net.wait(BLOCKS + 1, timeout=150, alive=[kms.assert_alive])
    watcher = net.node("v1")
    report = check_commits(watcher, range(1, BLOCKS + 1), net.chain_id, key.public_key, key.address)
    rig.record.blocks = BLOCKS
    rig.record.notes["our_signatures_in_commits"] = len(report.signed)
    assert not report.bad, report.summary()
    # our node needs a moment to connect at start: allow the first blocks without us
    assert len(report.signed) >= BLOCKS - 3, report.summary()
    assert evidence_in(watcher, range(1, BLOCKS + 1)) == []
    assert [e for e in kms.audit_entries() if e["outcome"] == "error"] == []


def test_noise_wrong_pinned_peer_id_connects_to_nothing_and_says_so(rig: Rig) -> None:
    rig.describe("negative-noise-wrong-pin", "noise", "softsign")
    stranger = rig.make_node("stranger").libp2p_id()
    solo = solo_chain(rig, transport="noise", noise_pin=stranger)
    real = solo.node.libp2p_id()
    assert stranger != real
    within(
        20, lambda: any("peer ID mismatch" in str(e.get("reason")) for e in solo.kms.log_events())
    )
    highest = highest_height(solo.node, WATCH_SECONDS)
    solo.kms.assert_alive()
    rig.record.notes["highest"] = highest
    assert highest == 0
    events = solo.kms.log_events()
    mismatches = [e for e in events if "peer ID mismatch" in str(e.get("reason", ""))]
    assert len(mismatches) == 1, solo.kms.describe()
    assert f"the node is {real}, expected {stranger}" in str(mismatches[0]["reason"])
    assert not any(e.get("msg") == "link up" for e in events), solo.kms.describe()
    assert solo.kms.audit_entries() == []
    # The node never saw message 3, so it never got to its allowlist check.
    assert "rejecting non-allowlisted signer peer" not in solo.node.log_text()


def test_noise_node_allowlisting_another_signer_rejects_kms(rig: Rig) -> None:
    rig.describe("negative-noise-node-allowlist", "noise", "softsign")
    other = rig.make_node("other-signer").libp2p_id()
    solo = solo_chain(rig, transport="noise", noise_allow=other)
    ours = solo.kms.peer_id()
    within(20, lambda: "rejecting non-allowlisted" in solo.node.log_text())
    highest = highest_height(solo.node, WATCH_SECONDS)
    solo.kms.assert_alive()
    rig.record.notes["highest"] = highest
    assert highest == 0
    log = solo.node.log_text()
    assert "rejecting non-allowlisted signer peer" in log, solo.node.log_tail()
    assert ours in log, solo.node.log_tail()
    assert solo.kms.audit_entries() == []


MIB = 1024 * 1024
# The largest extension v0.40 itself can carry: its consensus WAL refuses a message above
# maxMsgSize + 24 = 1 048 600 bytes (consensus/wal.go), and a precommit with a full 1 MiB
# extension is 1 048 859 bytes: the node stops with CONSENSUS FAILURE after kms signed it.
WAL_SAFE_EXTENSION = MIB - 1024
EXT_ENABLE_HEIGHT = 2
EXT_TX_PREFIX = b"extensionSum="  # the e2e app's tx carrying the extended commit, hex-encoded


def _extension_chain(rig: Rig, transport: str, size: int) -> tuple[Solo, E2EApp]:
    """A solo v0.40 chain on the v0.40 e2e app, whose every precommit has a `size`-byte extension."""
    solo = solo_chain(
        rig, transport=transport, vote_extensions_height=EXT_ENABLE_HEIGHT, start=False
    )
    app = rig.procs.add(
        E2EApp(
            rig.cometbft,
            rig.tmp_path / "app",
            solo.chain_id,
            vote_extension_size=size,
            vote_extensions_enable_height=EXT_ENABLE_HEIGHT,
        )
    )
    if not app.available:
        pytest.fail(f"{app.path} missing: scripts/install-cometbft v0.40 builds it")
    app.start()
    solo.node.proxy_app = app.addr
    solo.kms.start()
    solo.node.start()
    return solo, app


def _signed_extended_precommits(solo: Solo) -> list[int]:
    return [
        int(e["height"])
        for e in solo.kms.log_events()
        if e.get("msg") == "signed" and e.get("type") == "precommit" and e.get("extension_signed")
    ]


@pytest.mark.parametrize("transport", ["noise", "tcp"])
def test_near_1_mib_vote_extensions_keep_the_chain_going(rig: Rig, transport: str) -> None:
    """v0.40's own e2e app extends every precommit with 1 MiB - 1 KiB: every
    SignVoteRequest and our response are ~1 MiB; the chain only moves on if the node got and
    verified our extension signatures, and each block carries the extended commit."""
    rig.describe(f"vote-extension-1mib-{transport}", transport, "softsign", extensions=True)
    solo, app = _extension_chain(rig, transport, WAL_SAFE_EXTENSION)
    last = 6
    chain_commits_blocks_signed_by_us(rig, solo, last, timeout=180)
    sizes = []
    for h in range(EXT_ENABLE_HEIGHT + 1, last + 1):
        txs = [base64.b64decode(t) for t in solo.node.block(h)["block"]["data"]["txs"] or []]
        ext_txs = [t for t in txs if t.startswith(EXT_TX_PREFIX)]
        assert len(ext_txs) == 1, f"height {h}: no extended-commit tx"
        sizes.append(len(ext_txs[0]))
    # hex of an extended commit holding one such extension (+ our signatures)
    assert all(s > 2 * WAL_SAFE_EXTENSION for s in sizes), sizes
    rig.record.notes["extended_commit_tx_bytes"] = sizes[0]
    assert f"len={WAL_SAFE_EXTENSION}" in app.log_text(), app.describe()
    signed = _signed_extended_precommits(solo)
    assert set(range(EXT_ENABLE_HEIGHT, last + 1)) <= set(signed), solo.kms.describe()


def test_full_1_mib_extension_is_signed_and_reaches_the_node(rig: Rig) -> None:
    """Exactly MaxVoteExtensionSize over Noise: kms signs the precommit and the node takes our
    1 MiB response (its own WAL then refuses the vote, a v0.40 limit, see WAL_SAFE_EXTENSION)."""
    rig.describe("vote-extension-full-1mib-noise", "noise", "softsign", extensions=True)
    solo, app = _extension_chain(rig, "noise", MIB)
    signed = within(60, lambda: EXT_ENABLE_HEIGHT in _signed_extended_precommits(solo), 0.3)
    assert signed, solo.kms.describe()
    assert f"len={MIB}" in app.log_text(), app.describe()
    within(20, lambda: "msg is too big" in solo.node.log_text(), 0.3)
    log = solo.node.log_text()
    # the node holds our signed 1 MiB precommit: it is what its WAL refuses to store
    assert re.search(r"msg is too big: 1048[6-9]\d\d bytes, max: 1048600 bytes", log), log[-3000:]
    assert "SIGNED_MSG_TYPE_PRECOMMIT" in log
    solo.kms.assert_alive()
