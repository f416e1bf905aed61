"""`kms start` in a subprocess against the simulated validator node, with a software key.

Covers: every request type in each dialect over tcp (SecretConnection) and unix sockets,
double-sign refusals that keep the link up, two nodes racing conflicting votes, redial
after a node restart, SIGTERM, chain-ID mismatch, hostile input from the node, and the
outbound-only rule.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import time
from pathlib import Path
from typing import Literal

import pytest
from nacl.signing import SigningKey

from kms.errors import LinkClosed
from kms.privval.messages import (
    BlockID,
    Dialect,
    PingRequest,
    PingResponse,
    Proposal,
    PubKeyRequest,
    PubKeyResponse,
    SignedMsgType,
    SignedVoteResponse,
    SignVoteRequest,
    Vote,
)
from kms.sim.validator import (
    SignerRefused,
    SimulatedValidator,
    now_timestamp,
    random_block_id,
)
from kms.state.store import StateStore
from tests.integration.daemon.harness import (
    Home,
    KmsProcess,
    listening_inodes,
    make_home,
    run_kms_start,
    socket_inodes_of,
)

CHAIN = "test-chain-1"


def softsign_config(home: Home, addrs: list[str], dialect: str, chain: str = CHAIN) -> Path:
    text = home.chain_section(chain)
    for a in addrs:
        text += home.validator_section(chain, a, home.identity, dialect)
    text += home.softsign_section([chain])
    return home.write_config(text)


def prevote(height: int, block: BlockID | None = None, round_: int = 0) -> Vote:
    return Vote(
        type=SignedMsgType.PREVOTE,
        height=height,
        round=round_,
        block_id=block if block is not None else random_block_id(),
        timestamp=now_timestamp(),
        validator_address=b"\x01" * 20,
    )


@pytest.mark.parametrize("dialect", [Dialect.V0_34, Dialect.V0_37, Dialect.V0_38, Dialect.V1])
@pytest.mark.parametrize("transport", ["tcp", "unix"])
async def test_signs_every_request_type_in_each_dialect(
    tmp_path: Path, dialect: Dialect, transport: Literal["tcp", "unix"]
) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    node = SimulatedValidator(
        CHAIN,
        dialect,
        transport=transport,
        path=tmp_path / "pv.sock" if transport == "unix" else None,
    )
    await node.start()
    kms = KmsProcess(softsign_config(home, [node.addr], dialect.value))
    try:
        await node.wait_connected(10)
        assert await node.get_pubkey() == bytes(SigningKey(home.seed).verify_key)
        assert isinstance(await node.request(PingRequest()), PingResponse)
        reports = await node.run_heights(5)
        assert [r.height for r in reports] == [1, 2, 3, 4, 5]
        state = StateStore(home.state_file(CHAIN)).load()
        assert (state.height, state.round, state.step) == (5, 0, 2)
    finally:
        await node.close()
        assert kms.terminate() == 0, kms.log()


async def test_conflicting_vote_is_refused_and_the_link_keeps_working(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    async with SimulatedValidator(CHAIN, Dialect.V0_38) as node:
        kms = KmsProcess(softsign_config(home, [node.addr], "v0.38"))
        try:
            await node.get_pubkey()
            first = await node.sign_vote(prevote(10))
            with pytest.raises(SignerRefused) as refused:
                await node.sign_vote(prevote(10))  # another block, same HRS
            assert refused.value.error.code == 2
            assert "double sign" in refused.value.error.description
            # same request again: the stored signature comes back (idempotent retry)
            again = await node.sign_vote(dataclasses.replace(first, signature=b""))
            assert again.signature == first.signature
            # a regression is refused too
            with pytest.raises(SignerRefused):
                await node.sign_vote(prevote(9))
            # and the link still serves the next height
            await node.sign_vote(prevote(11))
            assert node.connections == 1
        finally:
            assert kms.terminate() == 0, kms.log()


async def test_two_nodes_racing_conflicting_votes_get_exactly_one_signature(
    tmp_path: Path,
) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    a = SimulatedValidator(CHAIN, Dialect.V0_38)
    b = SimulatedValidator(CHAIN, Dialect.V0_38)
    await a.start()
    await b.start()
    kms = KmsProcess(softsign_config(home, [a.addr, b.addr], "v0.38"))
    try:
        await a.get_pubkey()
        await b.get_pubkey()
        for height in range(1, 21):
            results = await asyncio.gather(
                a.sign_vote(prevote(height)),
                b.sign_vote(prevote(height)),
                return_exceptions=True,
            )
            signed = [r for r in results if isinstance(r, Vote)]
            refused = [r for r in results if isinstance(r, SignerRefused)]
            assert len(signed) == 1 and len(refused) == 1, results
    finally:
        await a.close()
        await b.close()
        assert kms.terminate() == 0, kms.log()


async def test_node_restart_is_redialled_within_a_second(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    node = SimulatedValidator(CHAIN, Dialect.V0_38)
    await node.start()
    port = node.port
    kms = KmsProcess(softsign_config(home, [node.addr], "v0.38"))
    try:
        await node.run_heights(2)
        await node.close()
        await asyncio.sleep(1.5)  # the node is down for a while: kms backs off
        node = SimulatedValidator(CHAIN, Dialect.V0_38, port=port)
        t0 = time.monotonic()
        await node.start()
        await node.wait_connected(5)
        took = time.monotonic() - t0
        assert took < 1.0, f"redial took {took:.2f} s"
        await node.run_heights(2, start_height=3)
    finally:
        await node.close()
        assert kms.terminate() == 0, kms.log()


async def test_wrong_chain_id_is_refused_without_a_signature(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    async with SimulatedValidator(CHAIN, Dialect.V1) as node:
        kms = KmsProcess(softsign_config(home, [node.addr], "v1"))
        try:
            resp = await node.request(PubKeyRequest("other-chain"))
            assert isinstance(resp, PubKeyResponse) and resp.error is not None
            assert not resp.pub_key
            resp = await node.request(SignVoteRequest(prevote(5), "other-chain"))
            assert isinstance(resp, SignedVoteResponse) and resp.error is not None
            assert resp.vote is None or not resp.vote.signature
            assert StateStore(home.state_file(CHAIN)).load().height == 0
        finally:
            assert kms.terminate() == 0, kms.log()


@pytest.mark.parametrize(
    "vote",
    [
        Vote(type=SignedMsgType.PREVOTE, height=0, round=0),  # height 0
        Vote(type=SignedMsgType.PROPOSAL, height=5, round=0),  # not a vote type
        Vote(type=SignedMsgType.PREVOTE, height=5, round=-1),  # negative round
        dataclasses.replace(prevote(5), extension=b"x"),  # extension on a prevote
    ],
    ids=["height-0", "proposal-type", "negative-round", "extension-on-prevote"],
)
async def test_malformed_votes_are_refused_without_a_signature(tmp_path: Path, vote: Vote) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    async with SimulatedValidator(CHAIN, Dialect.V0_38) as node:
        kms = KmsProcess(softsign_config(home, [node.addr], "v0.38"))
        try:
            resp = await node.request(SignVoteRequest(vote, CHAIN))
            assert isinstance(resp, SignedVoteResponse)
            assert resp.error is not None
            assert resp.vote is None or not resp.vote.signature
            await node.sign_vote(prevote(6))  # link still up
        finally:
            assert kms.terminate() == 0, kms.log()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff" * 11,  # varint longer than 10 bytes
        b"\xff\xff\xff\xff\x0f",  # a 4 GiB length prefix: oversize, refused before reading
        b"\x05\x0a\x03abc",  # a tag the node never sends (PubKeyResponse)
        b"\x03\xde\xad\xbe",  # not protobuf
    ],
    ids=["long-varint", "oversize", "response-from-node", "not-protobuf"],
)
async def test_garbage_from_the_node_closes_the_link_and_kms_redials(
    tmp_path: Path, garbage: bytes
) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    sock = tmp_path / "pv.sock"
    async with SimulatedValidator(CHAIN, Dialect.V0_38, transport="unix", path=sock) as node:
        kms = KmsProcess(softsign_config(home, [node.addr], "v0.38"))
        try:
            await node.wait_connected(10)
            conn = node._conn
            assert conn is not None
            await conn.transport.write(garbage)
            # kms answers nothing and closes the connection
            with pytest.raises((LinkClosed, OSError)):
                await asyncio.wait_for(conn.transport.read(), 5)
            await node.drop_connection()
            await node.wait_connected(5)  # kms redialled
            await node.run_heights(1)
            assert kms.alive()
            assert StateStore(home.state_file(CHAIN)).load().height == 1
        finally:
            assert kms.terminate() == 0, kms.log()


async def test_sigterm_exits_cleanly_and_quickly(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    async with SimulatedValidator(CHAIN, Dialect.V0_38) as node:
        kms = KmsProcess(softsign_config(home, [node.addr], "v0.38"))
        await node.run_heights(1)
        t0 = time.monotonic()
        code = kms.terminate(timeout=10)
        assert code == 0, kms.log()
        assert time.monotonic() - t0 < 5


async def test_kms_never_listens_on_a_network_socket(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    async with SimulatedValidator(CHAIN, Dialect.V0_38) as node:
        kms = KmsProcess(softsign_config(home, [node.addr], "v0.38"))
        try:
            await node.run_heights(2)
            mine = socket_inodes_of(kms.pid)
            assert mine, "kms should hold its outbound connection"
            assert not (mine & listening_inodes()), "kms has a listening tcp/udp socket"
        finally:
            assert kms.terminate() == 0, kms.log()


def test_start_refuses_without_a_state_file(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    os.unlink(home.state_file(CHAIN))
    cfg = softsign_config(home, ["tcp://127.0.0.1:1"], "v0.38")
    r = run_kms_start(cfg)
    assert r.returncode == 1
    assert str(home.state_file(CHAIN)) in r.stderr


def test_start_refuses_a_corrupt_state_file(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    home.state_file(CHAIN).write_text('{"height": "12", "round": ')
    cfg = softsign_config(home, ["tcp://127.0.0.1:1"], "v0.38")
    r = run_kms_start(cfg)
    assert r.returncode == 1
    assert str(home.state_file(CHAIN)) in r.stderr
    # and the file was not "repaired"
    assert home.state_file(CHAIN).read_text() == '{"height": "12", "round": '


def test_start_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    cfg = home.write_config(home.chain_section(CHAIN) + "[[validator]]\nchain_id = 'nope'\n")
    r = run_kms_start(cfg)
    assert r.returncode == 2
    assert "validator" in r.stderr


async def test_log_lines_carry_chain_height_round_step_outcome_latency(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    async with SimulatedValidator(CHAIN, Dialect.V0_38) as node:
        kms = KmsProcess(softsign_config(home, [node.addr], "v0.38"))
        try:
            await node.run_heights(1)
            await node.sign_proposal(
                Proposal(SignedMsgType.PROPOSAL, 5, 0, -1, random_block_id(), now_timestamp())
            )
        finally:
            assert kms.terminate() == 0
    lines = [json.loads(x) for x in kms.log().splitlines() if x.startswith("{")]
    signed = [x for x in lines if x.get("msg") == "signed"]
    assert {x["type"] for x in signed} >= {"proposal", "prevote", "precommit"}
    for x in signed:
        assert x["chain"] == CHAIN and "height" in x and "round" in x and "latency_ms" in x
        assert x["replica"] == "softsign"
        # v0.38: the non-nil precommit carries an extension signature, nothing else does
        assert x["extension_signed"] is (x["type"] == "precommit")
    text = kms.log()
    assert home.seed.hex() not in text


async def test_metrics_textfile_and_loopback_listener_report_signatures(tmp_path: Path) -> None:
    home = make_home(tmp_path / "kms", [CHAIN])
    prom = tmp_path / "kms.prom"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with SimulatedValidator(CHAIN, Dialect.V0_38) as node:
        cfg = softsign_config(home, [node.addr], "v0.38")
        cfg.write_text(
            cfg.read_text()
            + f'\n[metrics]\ntextfile = "{prom}"\nlisten = "127.0.0.1:{port}"\ninterval = 0.2\n'
        )
        kms = KmsProcess(cfg)
        try:
            await node.run_heights(3)
            await asyncio.sleep(0.6)
            text = prom.read_text()
            assert (
                f'kms_signatures_total{{chain="{CHAIN}",type="precommit",outcome="signed"}} 3'
                in text
            )
            assert f'kms_last_signed_height{{chain="{CHAIN}"}} 3' in text
            assert "kms_link_up{" in text
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = (await asyncio.wait_for(reader.read(), 5)).decode()
            writer.close()
            assert body.startswith("HTTP/1.1 200") and "kms_signatures_total" in body
        finally:
            assert kms.terminate() == 0, kms.log()
