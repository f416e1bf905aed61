"""The replicas of one replica set and their health: open, mark up/down, probe, health loop.

Owns: each replica's mutable bookkeeping (`Replica`: state, outstanding work,
counters, recent service times), opening every replica and agreeing on the
public key, moving a replica up and down, probing it, the health loop's
schedule, and the health and per-replica statistics views. Never chooses where
a request goes, never signs, retries or hedges (kms/signer/replicas.py does),
never touches double-sign state, sockets or the privval protocol.

Rules:
- `open()` opens every replica concurrently. Every replica that answers must
  report the same public key, else `KeyMismatchError` naming the devices. A
  replica that cannot be reached is marked down and logged; start-up needs AT
  LEAST ONE replica to answer (otherwise `NoHealthyReplicaError`), because the
  key's public half must be known and verified before serving.
- A replica that reports a different key later (a probe after it came back)
  is excluded (`mismatch`) and never used again.
- `run_health(stop)`: pings every up replica every `health_interval` seconds
  (keeping device sessions inside their idle limit) and probes down replicas
  every `down_probe_interval` seconds (re-open, ping, key check) to bring them
  back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from kms.errors import KeyMismatchError, NoHealthyReplicaError, SignerError, describe
from kms.signer.base import Health, Signer
from kms.signer.hedge import LatencyWindow
from kms.signer.replica_policy import (
    Pingable,
    ReplicaObserver,
    ReplicaState,
    ReplicaStats,
    ReplicaView,
)

log = logging.getLogger(__name__)


class Replica:
    """Mutable bookkeeping for one replica (owned by one replica set, one event loop)."""

    def __init__(self, index: int, signer: Signer, window: int) -> None:
        self.index = index
        self.signer = signer
        self.state: ReplicaState = "down"
        self.outstanding = 0
        self.assigned = 0
        self.signatures = 0
        self.errors = 0
        self.last_error = "not opened"
        self.last_latency: float | None = None
        self.last_probe = float("-inf")
        self.opened = False
        # service times (queueing excluded) of recent signatures, for the hedge delay
        self.latencies = LatencyWindow(window)
        # the last time it answered (any attempt), or when it became busy after being idle
        self.progress = 0.0
        self.down_event = asyncio.Event()  # set when marked down; replaced when back up

    @property
    def name(self) -> str:
        return self.signer.name

    def view(self) -> ReplicaView:
        # the device's own queue when the signer knows it: several chains (each with its
        # own ReplicaSet) share one device, and spread must see all of their work
        # (our own count too: a request just started reaches the device's queue only
        # when its task first runs, and a burst must not pile onto one device meanwhile)
        device_load = self.signer.load
        load = self.outstanding if device_load is None else max(device_load, self.outstanding)
        return ReplicaView(self.index, self.state, load, self.assigned)

    def stats(self) -> ReplicaStats:
        return ReplicaStats(
            self.name,
            self.state,
            self.outstanding,
            self.signatures,
            self.errors,
            self.last_error,
            self.last_latency,
        )


class ReplicaPool:
    """The replicas of the set `name`; see the module docstring for the rules.

    `observer` is read at each report (the supervisor sets the set's observer after
    construction)."""

    def __init__(
        self,
        name: str,
        signers: Sequence[Signer],
        *,
        window: int,
        health_interval: float,
        down_probe_interval: float,
        probe_timeout: float,
        observer: Callable[[], ReplicaObserver],
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self.replicas = [Replica(i, s, window) for i, s in enumerate(signers)]
        self.health_interval = health_interval
        self.down_probe_interval = down_probe_interval
        self.probe_timeout = probe_timeout
        self._observer = observer
        self._clock = clock
        self.public_key: bytes | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> bytes:
        """Open every replica; the public key they agree on."""
        results = await asyncio.gather(
            *(self._open_one(r) for r in self.replicas), return_exceptions=True
        )
        keys: dict[str, bytes] = {}
        for r, res in zip(self.replicas, results, strict=True):
            if isinstance(res, bytes):
                keys[r.name] = res
            elif isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res
                r.state, r.last_error = "down", describe(res)
                r.errors += 1
                # the error names the replica; an auth failure is not "unreachable"
                log.warning("%s: replica down at start: %s", self.name, r.last_error)
        if not keys:
            detail = "; ".join(
                e if (e := r.last_error).startswith(r.name) else f"{r.name}: {e}"
                for r in self.replicas
            )
            await self.close()
            raise NoHealthyReplicaError(f"{self.name}: no replica could be opened ({detail})")
        if len(set(keys.values())) > 1:
            detail = ", ".join(f"{n}={k.hex()}" for n, k in keys.items())
            await self.close()
            raise KeyMismatchError(f"{self.name}: replicas disagree on the public key: {detail}")
        self.public_key = next(iter(keys.values()))
        for r in self.replicas:
            if r.name in keys:
                self.mark_up(r)
                r.last_probe = self._clock()
        up = [r.name for r in self.replicas if r.state == "up"]
        log.info("%s: opened replicas %s (%d of %d up)", self.name, up, len(up), len(self.replicas))
        return self.public_key

    async def _open_one(self, r: Replica) -> bytes:
        await r.signer.open()
        r.opened = True
        return r.signer.public_key

    async def close(self) -> None:
        await asyncio.gather(*(r.signer.close() for r in self.replicas), return_exceptions=True)

    # --- state changes -----------------------------------------------------------------

    def mark_down(self, r: Replica, exc: BaseException) -> None:
        r.errors += 1
        r.last_error = describe(exc)
        if r.state == "up":
            log.error("%s: replica %s marked down: %s", self.name, r.name, r.last_error)
        if r.state != "mismatch":
            r.state = "down"
        self._observer().hsm_health(r.name, False)
        r.down_event.set()
        r.last_probe = self._clock()

    def mark_up(self, r: Replica) -> None:
        if r.state != "up":
            r.down_event = asyncio.Event()
        r.state, r.last_error = "up", ""
        self._observer().hsm_health(r.name, True)

    # --- health --------------------------------------------------------------------------

    async def probe(self, r_index: int) -> None:
        """Probe one replica now: ping if up; re-open, ping and key-check if down."""
        r = self.replicas[r_index]
        if r.state == "mismatch":
            return
        r.last_probe = self._clock()
        was = r.state
        try:
            await asyncio.wait_for(self._probe_inner(r), self.probe_timeout)
        except asyncio.CancelledError:
            raise
        except KeyMismatchError as e:
            r.state, r.last_error = "mismatch", str(e)
            r.down_event.set()
            r.errors += 1
            log.error("%s: replica %s excluded: %s", self.name, r.name, e)
            return
        except Exception as e:
            self.mark_down(r, e)
            return
        if was != "up":
            log.info("%s: replica %s back in service", self.name, r.name)
        self.mark_up(r)

    async def _probe_inner(self, r: Replica) -> None:
        if r.state != "up" or not r.opened:
            await r.signer.open()
            r.opened = True
            key = r.signer.public_key
            if self.public_key is not None and key != self.public_key:
                raise KeyMismatchError(
                    f"{r.name} reports public key {key.hex()}, the set's key is "
                    f"{self.public_key.hex()}"
                )
        if isinstance(r.signer, Pingable):
            await r.signer.ping(timeout=self.probe_timeout)

    def _due(self, r: Replica, now: float) -> float:
        interval = self.health_interval if r.state == "up" else self.down_probe_interval
        return r.last_probe + interval

    async def check_health(self) -> None:
        """One round: probe every replica whose interval has elapsed, concurrently."""
        now = self._clock()
        due = [r.index for r in self.replicas if r.state != "mismatch" and self._due(r, now) <= now]
        if due:
            await asyncio.gather(*(self.probe(i) for i in due))

    async def run_health(self, stop: asyncio.Event) -> None:
        """Run health rounds until `stop` is set (the supervisor owns this task)."""
        while not stop.is_set():
            await self.check_health()
            now = self._clock()
            pending = [self._due(r, now) for r in self.replicas if r.state != "mismatch"]
            wait = max(0.05, min(pending) - now) if pending else self.health_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)

    # --- views ---------------------------------------------------------------------------

    def health(self) -> Health:
        detail = ", ".join(
            f"{r.name}: {r.state}" + (f" ({r.last_error})" if r.last_error else "")
            for r in self.replicas
        )
        return Health(any(r.state == "up" for r in self.replicas), detail)

    def replica_health(self) -> dict[str, Health]:
        return {r.name: Health(r.state == "up", r.last_error or r.state) for r in self.replicas}

    def known_key(self) -> bytes:
        if self.public_key is None:
            raise SignerError(f"replica set {self.name}: public key unknown before open()")
        return self.public_key
