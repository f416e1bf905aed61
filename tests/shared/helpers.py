"""Builders for the shared-state tests: clients, gates, pushed records, candidates."""

from __future__ import annotations

from kms.privval.messages import BlockID
from kms.shared.admin import push
from kms.shared.etcd import EtcdClient
from kms.shared.gate import SharedGate
from kms.shared.record import Record, decode, watermark_key
from kms.sim.etcd_cluster import EtcdCluster
from kms.state.machine import SignCandidate, SignState
from tests.unit.state.helpers import CHAIN, vote

PREFIX = "/kms/test"


def client_for(cluster: EtcdCluster, timeout: float = 1.0) -> EtcdClient:
    return EtcdClient(cluster.endpoints, timeout=timeout)


def gate_for(client: EtcdClient, host: str) -> SharedGate:
    return SharedGate(client, prefix=PREFIX, chain_id=CHAIN, host_id=host)


async def init_record(client: EtcdClient, state: SignState | None = None) -> None:
    await push(client, PREFIX, CHAIN, state or SignState.initial(), "test-init")


def cand_vote(type_: int, h: int, r: int, block: BlockID, t: int = 1_700_000_000) -> SignCandidate:
    return SignCandidate.for_vote(CHAIN, vote(type_, h, r, block, t=t))


async def stored_record(client: EtcdClient) -> Record:
    """The chain's watermark record as etcd holds it now (it must exist)."""
    kv = await client.get(watermark_key(PREFIX, CHAIN))
    assert kv is not None, "no watermark record in etcd"
    return decode(kv.value)
