"""`kms start` over noise:// against the simulated validator listening like cometbft v0.40's
NoiseListener (our own responder implementation: full handshake, then the allowlist).

Covers: every request type signed over Noise; a node with another peer ID than the pinned
one gets nothing (not even message 3) and kms says so in one log line; a node allowlisting
another signer ID closes the link after the handshake and gets no answer; `kms ident show` and `kms init` print the
peer ID the node must allowlist.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from nacl.signing import SigningKey

from kms.identity import identity_public_key, load_identity_key
from kms.noise.peerid import peer_id_from_ed25519
from kms.privval.messages import Dialect, PingRequest, PingResponse
from kms.sim.validator import SimulatedValidator
from tests.integration.daemon.harness import Home, KmsProcess, make_home, wait_until

CHAIN = "noise-chain-1"
NODE_KEY = bytes.fromhex("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
NODE_ID = "12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf"
OTHER_ID = "12D3KooWC4T1AXU2s2YBgGJ2FeaYVtsKoHZWJeubnWe9SnuSE7Zb"


def kms_peer_id(home: Home) -> str:
    return peer_id_from_ed25519(identity_public_key(load_identity_key(home.identity)))


def config(home: Home, addr: str) -> Path:
    text = home.chain_section(CHAIN)
    text += home.validator_section(CHAIN, addr, home.identity, "v0.40")
    text += home.softsign_section([CHAIN])
    return home.write_config(text)


def log_events(kms: KmsProcess) -> list[dict[str, object]]:
    out = []
    for line in kms.log().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


async def test_signs_over_noise_with_the_pinned_node(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    node = SimulatedValidator(
        CHAIN, Dialect.V0_40, transport="noise", node_key=NODE_KEY, allow_peer_id=kms_peer_id(home)
    )
    await node.start()
    assert node.addr.startswith(f"noise://{NODE_ID}@127.0.0.1:")
    kms = KmsProcess(config(home, node.addr))
    try:
        await node.wait_connected(10)
        assert await node.get_pubkey() == bytes(SigningKey(home.seed).verify_key)
        assert isinstance(await node.request(PingRequest()), PingResponse)
        reports = await node.run_heights(5)  # proposal, prevote, precommit + extension, verified
        assert [r.height for r in reports] == [1, 2, 3, 4, 5]
        assert node.connections == 1 and node.rejected_peers == []
    finally:
        await node.close()
        assert kms.terminate() == 0, kms.log()


async def test_wrong_pinned_peer_id_connects_to_nothing_and_says_so(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    node = SimulatedValidator(
        CHAIN, Dialect.V0_40, transport="noise", node_key=NODE_KEY, allow_peer_id=None
    )
    await node.start()
    kms = KmsProcess(config(home, f"noise://{OTHER_ID}@127.0.0.1:{node.port}"))
    try:

        def mismatch_logged() -> bool:
            return any("peer ID mismatch" in str(e.get("reason", "")) for e in log_events(kms))

        await wait_until(mismatch_logged, 15)
        await asyncio.sleep(1.0)  # several redials: each dropped before message 3
        assert node.connections == 0  # the node never completed a handshake with us
        lines = [e for e in log_events(kms) if "peer ID mismatch" in str(e.get("reason", ""))]
        assert len(lines) == 1, lines  # once per state change, not per attempt
        reason = str(lines[0]["reason"])
        assert f"the node is {NODE_ID}, expected {OTHER_ID}" in reason
        assert not any(e.get("msg") == "link up" for e in log_events(kms))
    finally:
        await node.close()
        assert kms.terminate() == 0, kms.log()


async def test_node_allowlisting_another_signer_rejects_kms(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    node = SimulatedValidator(
        CHAIN,
        Dialect.V0_40,
        transport="noise",
        node_key=NODE_KEY,
        allow_peer_id=OTHER_ID,
        retry_window=1.0,
    )
    await node.start()
    kms = KmsProcess(config(home, node.addr))
    try:
        await wait_until(lambda: len(node.rejected_peers) >= 2, 15)
        assert set(node.rejected_peers) == {kms_peer_id(home)}
        assert node.connections == 0
    finally:
        await node.close()
        assert kms.terminate() == 0, kms.log()


def test_ident_show_and_init_print_the_libp2p_peer_id(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    cfg = config(home, f"noise://{NODE_ID}@127.0.0.1:1")
    out = subprocess.run(
        [sys.executable, "-m", "kms", "ident", "show", "-c", str(cfg)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"libp2p peer ID:  {kms_peer_id(home)}" in out
    fresh = tmp_path / "fresh"
    out = subprocess.run(
        [sys.executable, "-m", "kms", "init", str(fresh)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seed = load_identity_key(fresh / "secrets" / "kms-identity.key")
    assert (
        f"kms libp2p peer ID (for noise:// on CometBFT v0.40): {peer_id_from_ed25519(identity_public_key(seed))}"
        in out
    )
    bad = subprocess.run(
        [sys.executable, "-m", "kms", "ident", "show", "--key", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
