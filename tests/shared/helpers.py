"""Builders for the shared-state tests: clients, gates, pushed records, candidates."""

from __future__ import annotations

from kms.shared.admin import push
from kms.shared.etcd import EtcdClient
from kms.shared.gate import SharedGate
from kms.sim.etcd_cluster import EtcdCluster
from kms.state.machine import SignCandidate, SignState
from tests.unit.state.helpers import CHAIN, vote

PREFIX = "/kms/test"


def client_for(cluster: EtcdCluster, timeout: float = 1.0) -> EtcdClient:
    return EtcdClient(cluster.endpoints, timeout=timeout)


def gate_for(client: EtcdClient, host: str, **kw: object) -> SharedGate:
    return SharedGate(client, prefix=PREFIX, chain_id=CHAIN, host_id=host, **kw)  # type: ignore[arg-type]


async def init_record(client: EtcdClient, state: SignState | None = None) -> None:
    await push(client, PREFIX, CHAIN, state or SignState.initial(), "test-init")


def cand_vote(type_: int, h: int, r: int, block: object, t: int = 1_700_000_000) -> SignCandidate:
    return SignCandidate.for_vote(CHAIN, vote(type_, h, r, block, t=t))  # type: ignore[arg-type]
