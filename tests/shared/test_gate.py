"""The gate against a real three-member etcd cluster: the same rules, shared by hosts.

Every test here uses real etcd members on loopback; no etcd behaviour is faked.
Where a lost answer is needed, a client subclass performs the real Txn and then
throws its answer away (exactly what a connection cut after the commit does).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kms.errors import SharedStateAmbiguous, SharedStateError
from kms.refusal import Code
from kms.shared.admin import push, seal
from kms.shared.etcd import CasResult, EtcdClient
from kms.shared.gate import SharedGate
from kms.shared.record import watermark_key
from kms.sim.etcd_cluster import EtcdCluster
from kms.state.guard import ChainGuard
from kms.state.machine import SignState
from kms.state.store import StateStore
from tests.shared.helpers import (
    PREFIX,
    cand_vote,
    client_for,
    gate_for,
    init_record,
    stored_record,
)
from tests.unit.state.helpers import CHAIN, PRECOMMIT, PREVOTE, SoftSigner, block, vote

A, B = block(0xAA), block(0xBB)


@pytest.fixture
async def client(etcd_cluster: EtcdCluster) -> AsyncIterator[EtcdClient]:
    c = client_for(etcd_cluster)
    yield c
    await c.close()


async def test_missing_record_is_refused_naming_state_push(client: EtcdClient) -> None:
    g = gate_for(client, "a")
    with pytest.raises(SharedStateError, match="kms state push -c CONFIG --chain-id test-chain"):
        await g.load()
    with pytest.raises(SharedStateError, match="no shared watermark"):
        await g.authorize(cand_vote(PREVOTE, 1, 0, A), max_height=None)


async def test_second_host_conflict_is_refused(etcd_cluster: EtcdCluster) -> None:
    ca, cb = client_for(etcd_cluster), client_for(etcd_cluster)
    await init_record(ca)
    ga, gb = gate_for(ca, "a"), gate_for(cb, "b")
    await gb.load()  # b's cache is now stale: the conflict is found by the failed Txn
    va = await ga.authorize(cand_vote(PREVOTE, 5, 0, A), max_height=None)
    assert va.allowed and va.rule == "new-hrs"
    vb = await gb.authorize(cand_vote(PREVOTE, 5, 0, B), max_height=None)
    assert not vb.allowed and vb.error_code == Code.DOUBLE_SIGN
    assert "shared watermark (a)" in (vb.reason or "")
    # nil is a different message too (nil versus a block is slashable)
    vn = await gb.authorize(cand_vote(PREVOTE, 5, 0, block(0, total=0)), max_height=None)
    assert not vn.allowed and vn.error_code == Code.DOUBLE_SIGN
    # lower is a regression, on the cache, without a round trip
    vr = await gb.authorize(cand_vote(PREVOTE, 4, 0, A), max_height=None)
    assert not vr.allowed and vr.error_code == Code.REGRESSION
    rec = await stored_record(ca)
    assert (rec.hrs, rec.host, rec.block_id) == ((5, 0, 1), "a", A)
    await ca.close()
    await cb.close()


async def test_identical_and_timestamp_only_sign_the_stored_bytes(
    etcd_cluster: EtcdCluster,
) -> None:
    ca, cb = client_for(etcd_cluster), client_for(etcd_cluster)
    await init_record(ca)
    ga, gb = gate_for(ca, "a"), gate_for(cb, "b")
    first = cand_vote(PRECOMMIT, 9, 2, A, t=100)
    va = await ga.authorize(first, max_height=None)
    assert va.allowed
    same = await gb.authorize(cand_vote(PRECOMMIT, 9, 2, A, t=100), max_height=None)
    assert same.allowed and same.rule == "same-hrs-identical"
    assert same.sign_bytes == first.sign_bytes
    later = await gb.authorize(cand_vote(PRECOMMIT, 9, 2, A, t=999), max_height=None)
    assert later.allowed and later.rule == "same-hrs-vote-timestamp-only"
    assert later.sign_bytes == first.sign_bytes and later.timestamp == first.timestamp
    # Neither wrote: the record is a's.
    rec = await stored_record(ca)
    assert rec.host == "a"
    await ca.close()
    await cb.close()


async def test_seal_refuses_above_the_height(client: EtcdClient) -> None:
    await init_record(client)
    g = gate_for(client, "a")
    assert (await g.authorize(cand_vote(PREVOTE, 10, 0, A), max_height=None)).allowed
    await seal(client, PREFIX, CHAIN, 11)
    assert (await g.authorize(cand_vote(PREVOTE, 11, 0, A), max_height=None)).allowed
    v = await g.authorize(cand_vote(PREVOTE, 12, 0, A), max_height=None)
    assert not v.allowed and v.error_code == Code.MAX_HEIGHT and "sealed" in (v.reason or "")


async def test_undecodable_record_refuses(client: EtcdClient) -> None:
    await init_record(client)
    key = watermark_key(PREFIX, CHAIN)
    kv = await client.get(key)
    assert kv is not None
    assert (await client.cas(key, kv.mod_revision, b'{"v": 99}')).succeeded
    g = gate_for(client, "a")
    with pytest.raises(SharedStateError, match="does not decode"):
        await g.authorize(cand_vote(PREVOTE, 1, 0, A), max_height=None)


async def test_push_never_lowers(client: EtcdClient) -> None:
    await init_record(client, SignState(50, 0, 2))
    out = await push(client, PREFIX, CHAIN, SignState(10, 0, 0), "x")
    assert not out.changed and out.record.height == 50
    out = await push(client, PREFIX, CHAIN, SignState(60, 1, 0), "x")
    assert out.changed and out.record.hrs == (60, 1, 0)


class LoseAnswer(EtcdClient):
    """Commits the Txn for real, then loses the answer (an ambiguous commit)."""

    lose = True

    async def cas(self, key: bytes, mod_revision: int, value: bytes) -> CasResult:
        res = await super().cas(key, mod_revision, value)
        if self.lose:
            raise SharedStateAmbiguous(f"answer lost (committed={res.succeeded})")
        return res


async def test_ambiguous_commit_resolved_by_write_id(etcd_cluster: EtcdCluster) -> None:
    c = LoseAnswer(etcd_cluster.endpoints, timeout=1.0)
    c.lose = False
    await init_record(c)
    c.lose = True
    g = gate_for(c, "a")
    v = await g.authorize(cand_vote(PREVOTE, 3, 0, A), max_height=None)
    assert v.allowed and v.sign_bytes == cand_vote(PREVOTE, 3, 0, A).sign_bytes
    rec = await stored_record(c)
    assert g.cached is not None and rec.write_id == g.cached.write_id
    await c.close()


async def test_ambiguous_commit_that_lost_to_another_host_is_refused(
    etcd_cluster: EtcdCluster,
) -> None:
    c, other = LoseAnswer(etcd_cluster.endpoints, timeout=1.0), client_for(etcd_cluster)
    await init_record(other)
    g, h = gate_for(c, "a"), gate_for(other, "b")
    await g.load()
    assert (await h.authorize(cand_vote(PREVOTE, 3, 0, B), max_height=None)).allowed
    # a's Txn fails its compare (b moved), and the answer is lost too: a must re-read.
    v = await g.authorize(cand_vote(PREVOTE, 3, 0, A), max_height=None)
    assert not v.allowed and v.error_code == Code.DOUBLE_SIGN
    await c.close()
    await other.close()


async def test_etcd_down_refuses_and_sign_is_never_called(
    etcd_cluster: EtcdCluster, tmp_path: Path
) -> None:
    c = client_for(etcd_cluster, timeout=0.5)
    await init_record(c)
    path = tmp_path / "state.json"
    StateStore.create(path, SignState.initial())
    guard = ChainGuard(CHAIN, StateStore(path))
    guard.gate = gate_for(c, "a")
    signer = SoftSigner()
    assert (await guard.sign_vote(vote(PREVOTE, 1, 0, A), signer)).outcome == "signed"
    for m in etcd_cluster.members:
        etcd_cluster.kill(m)
    with pytest.raises(SharedStateError, match="etcd"):
        await guard.sign_vote(vote(PREVOTE, 2, 0, A), signer)
    assert signer.calls == 1 and guard.state.height == 1
    guard.close()
    await c.close()


async def test_no_quorum_refuses_then_recovers(etcd_cluster: EtcdCluster) -> None:
    c = client_for(etcd_cluster, timeout=0.5)
    await init_record(c)
    g = gate_for(c, "a")
    _m0, m1, m2 = etcd_cluster.members
    etcd_cluster.kill(m1)
    etcd_cluster.kill(m2)
    with pytest.raises(SharedStateError):
        await g.authorize(cand_vote(PREVOTE, 1, 0, A), max_height=None)
    etcd_cluster.restart(m1)
    etcd_cluster.wait_healthy(20)
    for _ in range(40):  # the cluster elects a leader again
        try:
            v = await g.authorize(cand_vote(PREVOTE, 1, 0, A), max_height=None)
            break
        except SharedStateError:
            await asyncio.sleep(0.25)
    assert v.allowed
    await c.close()


async def test_guards_on_two_hosts_sign_one_block_per_hrs(
    etcd_cluster: EtcdCluster, tmp_path: Path
) -> None:
    """Two guards (own state files, own clients) race conflicting requests.

    This is the rule the shared state exists for: without the gate, both local
    state files allow their first request at every HRS and both would sign.
    """
    guards, clients = [], []
    init = client_for(etcd_cluster)
    await init_record(init)
    await init.close()
    for name in ("a", "b"):
        path = tmp_path / f"{name}.json"
        StateStore.create(path, SignState.initial())
        g = ChainGuard(CHAIN, StateStore(path))
        c = client_for(etcd_cluster)
        g.gate = SharedGate(c, prefix=PREFIX, chain_id=CHAIN, host_id=name)
        guards.append(g)
        clients.append(c)
    signer = SoftSigner()
    rng = random.Random(7)
    signed: dict[tuple[int, int, int], set[bytes]] = {}
    for h in range(1, 16):
        for typ in (PREVOTE, PRECOMMIT):
            reqs = [
                guards[i].sign_vote(vote(typ, h, 0, block(rng.choice([1, 2, 3]))), signer)
                for i in (0, 1)
            ]
            for r in await asyncio.gather(*reqs):
                if r.outcome != "refused":
                    signed.setdefault((h, 0, typ), set()).add(r.sign_bytes)
    assert signed and all(len(v) == 1 for v in signed.values()), signed
    for g in guards:
        g.close()
    for c in clients:
        await c.close()


async def test_client_reads_fail_over_but_a_txn_is_never_resent(
    etcd_cluster: EtcdCluster,
) -> None:
    c = client_for(etcd_cluster, timeout=0.5)
    await init_record(c)
    key = watermark_key(PREFIX, CHAIN)
    etcd_cluster.kill(etcd_cluster.members[0])  # the preferred endpoint
    # if it was the leader, let the others elect one (a loaded machine can take longer
    # than the 0.5 s call timeout); the preferred endpoint stays dead either way
    etcd_cluster.wait_healthy()
    kv = await c.get(key)  # a read moves on to the next member
    assert kv is not None
    c2 = client_for(etcd_cluster, timeout=0.5)
    with pytest.raises(SharedStateAmbiguous):  # sent to the dead member once, not re-sent
        await c2.cas(key, kv.mod_revision, b"x")
    assert (await c2.get(key)) == kv  # nothing was written anywhere
    res = await c2.cas(key, kv.mod_revision, b"y")  # the next call uses the next member
    assert res.succeeded
    await c.close()
    await c2.close()
