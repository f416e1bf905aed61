"""Message size per dialect, end to end through `kms start`: a precommit carrying a 1 MiB
vote extension (v0.40's MaxVoteExtensionSize) is signed over Noise and over SecretConnection
on the v0.40 dialect; on v0.38 a request above that node's 10 KiB cap is refused before
anything is signed (the node could not read our echo of it), and the link recovers.

The node here is the in-process simulated validator (kms.sim.validator), which verifies
every signature against the canonical sign bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from kms.identity import identity_public_key, load_identity_key
from kms.noise.peerid import peer_id_from_ed25519
from kms.privval.framing import MAX_MESSAGE_SIZE_V0_40, MAX_VOTE_EXTENSION_SIZE
from kms.privval.messages import Dialect, SignedMsgType, Vote
from kms.sim.validator import SimulatedValidator, ValidatorSimError, now_timestamp, random_block_id
from kms.state.store import StateStore
from tests.integration.daemon.harness import Home, KmsProcess, make_home

CHAIN = "big-ext-1"


def _config(home: Home, addr: str, dialect: str) -> Path:
    text = home.chain_section(CHAIN)
    text += home.validator_section(CHAIN, addr, home.identity, dialect)
    text += home.softsign_section([CHAIN])
    return home.write_config(text)


def _precommit(height: int, extension: bytes) -> Vote:
    return Vote(
        type=SignedMsgType.PRECOMMIT,
        height=height,
        round=0,
        block_id=random_block_id(),
        timestamp=now_timestamp(),
        validator_address=b"\x01" * 20,
        extension=extension,
    )


def _node(home: Home, transport: Literal["tcp", "noise"], dialect: Dialect) -> SimulatedValidator:
    kms_id = peer_id_from_ed25519(identity_public_key(load_identity_key(home.identity)))
    return SimulatedValidator(
        CHAIN,
        dialect,
        transport=transport,
        allow_peer_id=kms_id,
        retry_window=3.0,
    )


@pytest.mark.parametrize("transport", ["noise", "tcp"])
async def test_one_mib_extension_is_signed_on_v0_40(
    tmp_path: Path, transport: Literal["tcp", "noise"]
) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    node = _node(home, transport, Dialect.V0_40)
    await node.start()
    kms = KmsProcess(_config(home, node.addr, "v0.40"))
    try:
        await node.wait_connected(10)
        ext = bytes(range(256)) * (MAX_VOTE_EXTENSION_SIZE // 256)
        assert len(ext) == MAX_VOTE_EXTENSION_SIZE
        signed = await node.sign_vote(_precommit(5, ext))  # verifies both signatures
        assert signed.extension == ext and signed.extension_signature
        # and the link keeps serving small requests afterwards, on the same connection
        await node.sign_vote(_precommit(6, b"small"))
        assert node.connections == 1
        state = StateStore(home.state_file(CHAIN)).load()
        assert (state.height, state.step) == (6, 2)
    finally:
        await node.close()
        assert kms.terminate() == 0, kms.log()
    assert MAX_MESSAGE_SIZE_V0_40 == 1_056_218


async def test_v0_38_request_above_10_kib_is_refused_before_signing(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    node = _node(home, "tcp", Dialect.V0_38)
    node.retry_window = 1.5
    await node.start()
    kms = KmsProcess(_config(home, node.addr, "v0.38"))
    try:
        await node.wait_connected(10)
        await node.get_pubkey()
        with pytest.raises(ValidatorSimError, match="no answer from the signer"):
            await node.sign_vote(_precommit(5, b"x" * (11 * 1024)))
        assert StateStore(home.state_file(CHAIN)).load().height == 0  # nothing was signed
        assert "exceeds the limit of 10240 bytes" in kms.log()
        node.retry_window = 10.0
        await node.sign_vote(_precommit(5, b"x" * (9 * 1024)))  # kms redialled; fits
        assert StateStore(home.state_file(CHAIN)).load().height == 5
    finally:
        await node.close()
        assert kms.terminate() == 0, kms.log()
