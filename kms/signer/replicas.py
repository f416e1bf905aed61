"""A chain's key held by several signers (YubiHSM2 replicas): failover and load spread.

Owns: sending each request to a replica (chosen by
`kms.signer.replica_policy.choose_replica`, a pure function of small frozen
views), retrying the same message on another replica when one fails, hedging
a stalled one (`kms.signer.hedge`), and the failover and hedge counters. The
replicas themselves (opening them, marking them up and down, the health loop
that keeps sessions alive and brings failed replicas back) are
`kms.signer.replica_pool`. Never touches double-sign state, sockets or the
privval protocol; never decides *whether* to sign, only *where*. (About 400
lines, most of them the rules below: one request race, kept in one place.)

Why failover cannot double sign: Ed25519 is deterministic. Every replica holds
the same key (checked at `open()` and again whenever a replica comes back), so
sending the SAME message to another replica can only reproduce the SAME
signature; a lost reply followed by a retry cannot create a conflicting one.
The double-sign decision is made once, before the message reaches this module.
As a last line of defence every signature is verified against the set's public
key before it is returned; a replica that returns a bad signature is treated as
failed.

Rules:
- `open()`: every replica that answers reports the same key, at least one
  answers (see `kms.signer.replica_pool`).
- Policy `spread`: the healthy replica with the least outstanding work (ties:
  the one given fewest requests so far, then config order), so N replicas give
  about N devices' throughput. Outstanding work is counted per device (the
  signer's `load`, which includes other chains' requests on the same device)
  when the signer reports it, else per replica set. Policy `primary`: the first healthy replica in
  config order.
- A connection error, timeout, device error or bad signature marks the replica
  down and the same message goes to the next replica, within the request's
  deadline. When a replica is marked down, every other request waiting on it
  (queued behind the failed one on the device) moves on at once instead of
  timing out one by one. When no healthy replica is left, down replicas are
  tried as a last resort (they may have recovered since the last probe), and
  when every replica has failed once, each gets one more try while the
  deadline allows (a session rebuilt after a lost reply or an expired session
  usually works; with a single device there is nowhere else to go). A
  replica that reported a different key is never used again.
- Hedging (`kms.signer.hedge`): when the replica a request waits on has
  stalled (no answer from it for a hedge delay derived from its own recent
  service times), the same message also goes to the next healthy replica and
  the first signature that verifies wins. Safe for the same reason as
  failover (same message, same deterministic signature). The slower attempt
  is not cut off: a device call in progress runs to its end (the session stays
  in step) and still marks a hung replica down when its own timeout fires; it
  counts as outstanding work meanwhile, so spread steers new requests away
  from it. A request hedges only to replicas that are up, never as a last
  resort; a caller that gives up (cancels) cancels all its attempts.
- `start_signing(messages)` (a precommit and its vote extension) starts every
  message at once, each first on a different healthy replica while there are
  enough, whatever the policy (under `primary` too: one device latency instead
  of two is worth using the second device); each then fails over and hedges on
  its own.
- Time: each attempt gets the rest of the request's deadline as its budget.
  A signer is expected to bound its own execution (YubiHsmSigner: the HTTP
  timeouts), because only it can tell queueing (a healthy but busy device)
  from a hang. `attempt_timeout` (off by default) caps every attempt for
  signers that cannot; note that such a cap includes queueing, so under load
  it can mark busy replicas down.
- `run_health(stop)`: the pool's health loop (pings up replicas, probes down
  ones back into service).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from kms.errors import NoHealthyReplicaError, SignerError, describe
from kms.signer.base import Health, Signature, Signer
from kms.signer.hedge import DEFAULT_HEDGE, HedgePolicy, hedge_delay
from kms.signer.replica_policy import (
    POLICY_KEYS,
    NoObserver,
    Policy,
    ReplicaObserver,
    ReplicaSetStats,
    choose_replica,
)
from kms.signer.replica_pool import Replica, ReplicaPool

log = logging.getLogger(__name__)


class _FailedMeanwhile(Exception):
    """Another request found this replica broken while this one was waiting on it."""


class ReplicaSet(Signer):
    """Signers holding the same key; see the module docstring for the rules."""

    observer: ReplicaObserver = NoObserver()

    def __init__(
        self,
        name: str,
        replicas: Sequence[Signer],
        policy: Policy = "spread",
        health_interval: float = 10.0,
        *,
        down_probe_interval: float = 1.0,
        attempt_timeout: float | None = None,
        default_timeout: float = 5.0,
        probe_timeout: float = 2.0,
        hedge: HedgePolicy = DEFAULT_HEDGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not replicas:
            raise ValueError(f"replica set {name!r} needs at least one replica")
        if policy not in POLICY_KEYS:
            raise ValueError(f"unknown replica policy {policy!r} (expected spread or primary)")
        names = [r.name for r in replicas]
        if len(set(names)) != len(names):
            raise ValueError(f"replica set {name!r}: replica names must be unique: {names}")
        self.name = name
        self.policy: Policy = policy
        self.attempt_timeout = attempt_timeout
        self.default_timeout = default_timeout
        self._clock = clock
        self.hedge = hedge
        self.pool = ReplicaPool(
            name,
            replicas,
            window=hedge.window,
            health_interval=health_interval,
            down_probe_interval=down_probe_interval,
            probe_timeout=probe_timeout,
            observer=lambda: self.observer,
            clock=clock,
        )
        self._replicas = self.pool.replicas
        self._verify_key: VerifyKey | None = None
        self._failovers = 0
        self._exhausted = 0
        self._hedges = 0
        self._hedge_wins = 0
        # slower twins of hedged requests, left to finish (see sign_traced)
        self._background: set[asyncio.Future[Signature]] = set()

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def public_key(self) -> bytes:
        return self.pool.known_key()

    async def open(self) -> None:
        self._verify_key = VerifyKey(await self.pool.open())

    async def close(self) -> None:
        for fut in list(self._background):
            fut.cancel()
        await self.pool.close()

    # --- signing -----------------------------------------------------------------------

    async def sign_traced(self, message: bytes, *, timeout: float | None = None) -> Signature:
        return await self._sign_race(message, timeout, None)

    @property
    def parallel_capacity(self) -> int:
        return sum(1 for r in self._replicas if r.state == "up")

    def start_signing(
        self, messages: Sequence[bytes], *, timeout: float | None = None
    ) -> list[asyncio.Future[Signature]]:
        """Start every message at once, each first on its own healthy replica while there
        are enough (a precommit and its vote extension: one device latency, not two);
        the rest go where the policy sends them."""
        picked: set[int] = set()
        firsts: list[int | None] = []
        for _ in messages:
            idx = self._choose(picked, hedge=True)  # healthy and not picked yet
            if idx is not None:
                picked.add(idx)
            firsts.append(idx)
        return [
            asyncio.ensure_future(self._sign_race(m, timeout, f))
            for m, f in zip(messages, firsts, strict=True)
        ]

    async def _sign_race(
        self, message: bytes, timeout: float | None, first_choice: int | None
    ) -> Signature:
        """Sign `message`: failover and hedging (see the module docstring). `first_choice`:
        the replica to try first (start_signing spreads its messages), else the policy's."""
        if self._verify_key is None:
            raise SignerError(f"replica set {self.name}: sign before open()")
        budget = self.default_timeout if timeout is None else timeout
        deadline = self._clock() + budget
        tried: set[int] = set()
        failures: list[str] = []
        # attempts in flight, by the replica they run on; the last one started is last
        running: dict[asyncio.Future[Signature], Replica] = {}
        first: Replica | None = None  # where the request went before any hedge
        sent: list[str] = []  # every replica an attempt went to (for the audit log)
        last_failed = ""
        second_round = False
        no_hedge_target = not self.hedge.enabled
        cancelled = False
        try:
            while True:
                now = self._clock()
                if not running:
                    idx = self._choose(tried) if first_choice is None else first_choice
                    first_choice = None
                    if idx is None and not second_round and failures:
                        # every replica failed once; a rebuilt session often works (a lost
                        # reply, an expired session), and with one device there is nowhere
                        # else to go
                        second_round = True
                        tried.clear()
                        idx = self._choose(tried)
                    if idx is None or deadline - now <= 0:
                        raise self._exhausted_error(budget, failures)
                    if failures:
                        self._failovers += 1
                        self.observer.failover(self.name, last_failed, self._replicas[idx].name)
                        log.warning("%s: failing over to %s", self.name, self._replicas[idx].name)
                    self._start(idx, message, deadline, tried, running, sent)
                    first = self._replicas[idx]
                elif not no_hedge_target:
                    slow = next(reversed(running.values()))
                    if now >= self._stalled_at(slow):
                        idx = self._choose(tried, hedge=True)
                        if idx is None:
                            no_hedge_target = True
                        else:
                            self._hedge(slow, self._replicas[idx], now)
                            self._start(idx, message, deadline, tried, running, sent)
                hedge_at = math.inf
                if not no_hedge_target and running:
                    hedge_at = self._stalled_at(next(reversed(running.values())))
                wait = min(hedge_at, deadline) - self._clock()
                done, _ = await asyncio.wait(
                    running, timeout=max(0.0, wait), return_when=asyncio.FIRST_COMPLETED
                )
                for fut in done:
                    r = running.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        if r is not first:
                            self._hedge_wins += 1
                        others = tuple(dict.fromkeys(n for n in sent if n != r.name))
                        sig = fut.result()
                        return dataclasses.replace(sig, also_sent_to=others) if others else sig
                    failures.append(f"{r.name}: {describe(exc)}")
                    last_failed = r.name
                if running and self._clock() >= deadline:
                    # what still runs ends on its own (each attempt is bounded by the
                    # same deadline) and marks its replica down then
                    raise self._exhausted_error(budget, failures or ["no answer in time"])
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            for fut in running:
                if cancelled:  # the caller gave up (its link closed): stop its attempts
                    fut.cancel()
                else:
                    # the slower twin runs to its end: a device call is never cut off
                    # half-way (the session stays in step), and a hung replica is still
                    # marked down when its own timeout fires
                    self._background.add(fut)
                    fut.add_done_callback(self._background_done)

    def _choose(self, tried: set[int], *, hedge: bool = False) -> int | None:
        views = [r.view() for r in self._replicas]
        if hedge:  # a hedge goes to a healthy replica only, never as a last resort
            views = [v for v in views if v.state == "up"]
        return choose_replica(views, self.policy, frozenset(tried))

    def _stalled_at(self, r: Replica) -> float:
        """When `r` counts as stalled: no answer since its last progress for a hedge delay.

        Progress is the device's own last answer when the signer reports it (other
        chains' requests on the same device count: a busy device is not a stalled one)."""
        device = r.signer.last_answer
        mark = r.progress if device is None else max(r.progress, device)
        return mark + hedge_delay(self.hedge, r.latencies)

    def _hedge(self, slow: Replica, to: Replica, now: float) -> None:
        self._hedges += 1
        self.observer.hedge(self.name, slow.name, to.name)
        log.info(
            "%s: %s has not answered for %.0f ms; also asking %s",
            self.name,
            slow.name,
            (now - max(slow.progress, slow.signer.last_answer or 0.0)) * 1000,
            to.name,
        )

    def _start(
        self,
        idx: int,
        message: bytes,
        deadline: float,
        tried: set[int],
        running: dict[asyncio.Future[Signature], Replica],
        sent: list[str],
    ) -> None:
        """Start an attempt on replica `idx` (recorded in `tried` and `sent`)."""
        r = self._replicas[idx]
        tried.add(idx)
        sent.append(r.name)
        now = self._clock()
        remaining = deadline - now
        if self.attempt_timeout is not None:
            remaining = min(remaining, self.attempt_timeout)
        if r.outstanding == 0:
            r.progress = now  # busy from now on
        # counted now, not when the task first runs: concurrent requests choosing in the
        # same loop iteration must see each other's work
        r.outstanding += 1
        r.assigned += 1
        # a replica tried as a last resort is already down: only a fresh failure counts
        down = r.down_event if r.state == "up" else asyncio.Event()
        task = asyncio.ensure_future(self._sign_on(r, message, remaining, down))
        # also when cancelled before it ever ran
        task.add_done_callback(functools.partial(self._attempt_done, r))
        running[task] = r

    def _attempt_done(self, r: Replica, _: asyncio.Future[Signature]) -> None:
        r.outstanding -= 1
        r.progress = self._clock()

    def _exhausted_error(self, budget: float, failures: list[str]) -> NoHealthyReplicaError:
        self._exhausted += 1
        why = "; ".join(failures) or "no replica available"
        return NoHealthyReplicaError(f"{self.name}: no replica signed within {budget:.2f}s ({why})")

    def _background_done(self, fut: asyncio.Future[Signature]) -> None:
        self._background.discard(fut)
        if not fut.cancelled():
            fut.exception()  # already recorded by _sign_on; retrieved so asyncio stays quiet

    async def _sign_on(
        self, r: Replica, message: bytes, timeout: float, down: asyncio.Event
    ) -> Signature:
        """One attempt on one replica (`_start` counts it as outstanding until it ends)."""
        start = self._clock()
        attempt = asyncio.ensure_future(r.signer.sign_traced(message, timeout=timeout))
        watcher = asyncio.ensure_future(down.wait())
        try:
            done, _ = await asyncio.wait(
                {attempt, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if attempt not in done:
                if watcher in done:
                    raise _FailedMeanwhile("marked down while this request waited")
                raise TimeoutError
            sig = attempt.result()
            self._verify(r, message, sig.signature)
        except BaseException as e:
            self.observer.hsm_request(r.name, self._clock() - start, False)
            if isinstance(e, Exception) and not isinstance(e, _FailedMeanwhile):
                self.pool.mark_down(r, e)
            raise
        finally:
            watcher.cancel()
            if not attempt.done():
                attempt.cancel()
        r.signatures += 1
        end = self._clock()
        r.last_latency = end - start
        service = r.signer.last_service_time
        if service is None:
            # the device works one request at a time: this one's service began when
            # the previous answer came (it was queued until then) or when it was sent
            service = end - max(start, r.progress)
        r.latencies.add(service)
        self.observer.hsm_request(r.name, r.last_latency, True)
        return Signature(sig.signature, r.name)

    def _verify(self, r: Replica, message: bytes, signature: bytes) -> None:
        assert self._verify_key is not None
        try:
            self._verify_key.verify(message, signature)
        except (BadSignatureError, ValueError, TypeError):
            raise SignerError(
                f"{r.name}: returned a signature that does not verify under "
                f"{self.name}'s public key"
            ) from None

    # --- health (kms.signer.replica_pool) ----------------------------------------------

    async def probe(self, r_index: int) -> None:
        """Probe one replica now: ping if up; re-open, ping and key-check if down."""
        await self.pool.probe(r_index)

    async def check_health(self) -> None:
        """One round: probe every replica whose interval has elapsed, concurrently."""
        await self.pool.check_health()

    async def run_health(self, stop: asyncio.Event) -> None:
        """Run health rounds until `stop` is set (the supervisor owns this task)."""
        await self.pool.run_health(stop)

    def health(self) -> Health:
        return self.pool.health()

    def replica_health(self) -> dict[str, Health]:
        return self.pool.replica_health()

    @property
    def replicas(self) -> tuple[Signer, ...]:
        return tuple(r.signer for r in self._replicas)

    @property
    def stats(self) -> ReplicaSetStats:
        return ReplicaSetStats(
            name=self.name,
            failovers=self._failovers,
            exhausted=self._exhausted,
            hedges=self._hedges,
            hedge_wins=self._hedge_wins,
            replicas=tuple(r.stats() for r in self._replicas),
        )
