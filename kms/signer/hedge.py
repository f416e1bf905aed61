"""When a replica set also sends a request to a second replica: the hedge delay.

Owns: the window of one replica's recent signing latencies and the pure rule
that turns it into a hedge delay. Never touches devices, the event loop or
requests (`kms.signer.replicas` does the sending).

Rule: a replica with work in hand that has not answered anything for
`clamp(multiplier x p99(recent service times), floor, ceiling)` seconds since
its last answer (or since it became busy) is stalled: a request waiting on it
also goes to the next healthy replica, and the first valid answer wins. A
replica with fewer than `min_samples` signatures behind it gets `ceiling`
(nothing is known about it yet, so it gets the benefit of the doubt).

Why "no answer since its last progress" and not "this request waited too
long": a device works one request at a time, so a request queued behind
others on a healthy device waits longer than one service time without
anything being wrong; hedging it would double the work exactly when the
devices are saturated. A hung device stops making progress at all, and then
every request waiting on it is hedged. Service times exclude queueing.

Why the bounds: the floor keeps a run of fast answers from making every
slightly slower one look stalled; the ceiling keeps a hung device from costing
more than about `ceiling` plus one device latency, well inside the request
timeout. A device shared by several chains counts every chain's answers
(`Signer.last_answer`, and the service times `Signer.last_service_time` as the
device measured them); a signer that cannot tell is judged on its own
chain's answers only, which can hedge needlessly (extra work, never a wrong
answer).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """How eagerly a replica set hedges. `enabled=False` restores plain failover."""

    enabled: bool = True
    multiplier: float = 1.5
    floor: float = 0.05  # seconds
    ceiling: float = 0.5  # seconds
    window: int = 64  # successful latencies remembered per replica
    min_samples: int = 8

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.ceiling:
            raise ValueError(f"hedge delay bounds need 0 < floor <= ceiling ({self})")
        if self.multiplier <= 0 or self.window < 1 or not 1 <= self.min_samples <= self.window:
            raise ValueError(f"invalid hedge policy {self}")


DEFAULT_HEDGE = HedgePolicy()


class LatencyWindow:
    """The last `size` successful latencies of one replica, with a cached p99."""

    __slots__ = ("_p99", "_samples")

    def __init__(self, size: int) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._p99: float | None = None

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._p99 = None

    def __len__(self) -> int:
        return len(self._samples)

    def p99(self) -> float | None:
        """The 99th percentile (nearest rank) of the window, None when empty."""
        if self._p99 is None and self._samples:
            ordered = sorted(self._samples)
            rank = max(0, -(-99 * len(ordered) // 100) - 1)  # ceil(0.99 n) - 1
            self._p99 = ordered[rank]
        return self._p99


def hedge_delay(policy: HedgePolicy, window: LatencyWindow) -> float:
    """Seconds to wait for this replica before hedging (see the module docstring)."""
    p99 = window.p99()
    if p99 is None or len(window) < policy.min_samples:
        return policy.ceiling
    return min(policy.ceiling, max(policy.floor, policy.multiplier * p99))
