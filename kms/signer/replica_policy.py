"""Choosing a replica, and the values a replica set reports: pure, no I/O.

Owns: the selection rule (`choose_replica` over frozen `ReplicaView`s, policies
`spread` and `primary`), the statistics dataclasses, and the observer protocol
a replica set reports to (implemented by `kms.metrics.Metrics`). Never touches
devices, the event loop or requests (`kms.signer.replicas` does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Policy = Literal["spread", "primary"]
ReplicaState = Literal["up", "down", "mismatch"]


@runtime_checkable
class Pingable(Protocol):
    """A signer that can prove it is alive cheaply (a YubiHSM2 ECHO)."""

    async def ping(self, *, timeout: float | None = None) -> None: ...


# --- pure selection ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What the selection needs to know about one replica."""

    index: int
    state: ReplicaState
    outstanding: int
    assigned: int


def _spread_key(v: ReplicaView) -> tuple[int, int, int]:
    return (v.outstanding, v.assigned, v.index)


def _primary_key(v: ReplicaView) -> tuple[int, int, int]:
    return (v.index, 0, 0)


POLICY_KEYS: dict[str, Callable[[ReplicaView], tuple[int, int, int]]] = {
    "spread": _spread_key,
    "primary": _primary_key,
}

# Which states are eligible, in order of preference: healthy first, then (as a last
# resort) those marked down. A replica with another key is never eligible.
_STATE_RANK: dict[ReplicaState, int | None] = {"up": 0, "down": 1, "mismatch": None}


def choose_replica(
    views: Sequence[ReplicaView], policy: Policy, tried: frozenset[int] = frozenset()
) -> int | None:
    """The index of the replica to try next, or None when none is left."""
    key = POLICY_KEYS[policy]
    ranked = [
        (rank, key(v), v.index)
        for v in views
        if v.index not in tried and (rank := _STATE_RANK[v.state]) is not None
    ]
    return min(ranked)[2] if ranked else None


# --- statistics ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    name: str
    state: ReplicaState
    outstanding: int
    signatures: int
    errors: int
    last_error: str
    last_latency: float | None  # seconds, of the last successful signature


@dataclass(frozen=True, slots=True)
class ReplicaSetStats:
    name: str
    failovers: int  # requests moved to another replica after a failure
    exhausted: int  # requests that no replica could sign in time
    hedges: int  # requests also sent to another replica because the first was slow
    hedge_wins: int  # hedged requests answered by a replica other than the first
    replicas: tuple[ReplicaStats, ...]


class ReplicaObserver(Protocol):
    """What a replica set reports (implemented by `kms.metrics.Metrics`)."""

    def hsm_request(self, replica: str, latency_s: float, ok: bool) -> None: ...

    def hsm_health(self, replica: str, healthy: bool) -> None: ...

    def failover(self, chain: str, from_replica: str, to_replica: str) -> None: ...

    def hedge(self, chain: str, slow_replica: str, to_replica: str) -> None: ...


class NoObserver:
    def hsm_request(self, replica: str, latency_s: float, ok: bool) -> None:
        pass

    def hsm_health(self, replica: str, healthy: bool) -> None:
        pass

    def failover(self, chain: str, from_replica: str, to_replica: str) -> None:
        pass

    def hedge(self, chain: str, slow_replica: str, to_replica: str) -> None:
        pass
