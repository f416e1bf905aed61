"""A chain's key held by several signers (YubiHSM2 replicas): failover and load spread.

Owns: choosing a replica for each request (`choose_replica`, a pure function of
small frozen views), retrying the same message on another replica when one
fails, the health loop that keeps sessions alive and brings failed replicas
back, and the failover counters. Never touches double-sign state, sockets or
the privval protocol; never decides *whether* to sign, only *where*.

Why failover cannot double sign: Ed25519 is deterministic. Every replica holds
the same key (checked at `open()` and again whenever a replica comes back), so
sending the SAME message to another replica can only reproduce the SAME
signature; a lost reply followed by a retry cannot create a conflicting one.
The double-sign decision is made once, before the message reaches this module.
As a last line of defence every signature is verified against the set's public
key before it is returned; a replica that returns a bad signature is treated as
failed.

Rules:
- `open()` opens every replica concurrently. Every replica that answers must
  report the same public key, else `KeyMismatchError` naming the devices. A
  replica that cannot be reached is marked down and logged; start-up needs AT
  LEAST ONE replica to answer (otherwise `NoHealthyReplicaError`), because the
  key's public half must be known and verified before serving.
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
- Time: each attempt gets the rest of the request's deadline as its budget.
  A signer is expected to bound its own execution (YubiHsmSigner: the HTTP
  timeouts), because only it can tell queueing (a healthy but busy device)
  from a hang. `attempt_timeout` (off by default) caps every attempt for
  signers that cannot; note that such a cap includes queueing, so under load
  it can mark busy replicas down.
- `run_health(stop)`: pings every up replica every `health_interval` seconds
  (keeping device sessions inside their idle limit) and probes down replicas
  every `down_probe_interval` seconds (re-open, ping, key check) to bring them
  back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from kms.errors import KeyMismatchError, NoHealthyReplicaError, SignerError
from kms.signer.base import Health, Signature, Signer

log = logging.getLogger(__name__)

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


_POLICY_KEYS: dict[str, Callable[[ReplicaView], tuple[int, int, int]]] = {
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
    key = _POLICY_KEYS[policy]
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
    replicas: tuple[ReplicaStats, ...]


class _Replica:
    """Mutable bookkeeping for one replica (owned by the ReplicaSet, one event loop)."""

    def __init__(self, index: int, signer: Signer) -> None:
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
        self.down_event = asyncio.Event()  # set when marked down; replaced when back up

    @property
    def name(self) -> str:
        return self.signer.name

    def view(self) -> ReplicaView:
        # the device's own queue when the signer knows it: several chains (each with its
        # own ReplicaSet) share one device, and spread must see all of their work
        device_load = self.signer.load
        load = self.outstanding if device_load is None else device_load
        return ReplicaView(self.index, self.state, load, self.assigned)


class _FailedMeanwhile(Exception):
    """Another request found this replica broken while this one was waiting on it."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


class ReplicaObserver(Protocol):
    """What a replica set reports (implemented by `kms.metrics.Metrics`)."""

    def hsm_request(self, replica: str, latency_s: float, ok: bool) -> None: ...

    def hsm_health(self, replica: str, healthy: bool) -> None: ...

    def failover(self, chain: str, from_replica: str, to_replica: str) -> None: ...


class _NoObserver:
    def hsm_request(self, replica: str, latency_s: float, ok: bool) -> None:
        pass

    def hsm_health(self, replica: str, healthy: bool) -> None:
        pass

    def failover(self, chain: str, from_replica: str, to_replica: str) -> None:
        pass


class ReplicaSet(Signer):
    """Signers holding the same key; see the module docstring for the rules."""

    observer: ReplicaObserver = _NoObserver()

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not replicas:
            raise ValueError(f"replica set {name!r} needs at least one replica")
        if policy not in _POLICY_KEYS:
            raise ValueError(f"unknown replica policy {policy!r} (expected spread or primary)")
        names = [r.name for r in replicas]
        if len(set(names)) != len(names):
            raise ValueError(f"replica set {name!r}: replica names must be unique: {names}")
        self.name = name
        self.policy: Policy = policy
        self.health_interval = health_interval
        self.down_probe_interval = down_probe_interval
        self.attempt_timeout = attempt_timeout
        self.default_timeout = default_timeout
        self.probe_timeout = probe_timeout
        self._clock = clock
        self._replicas = [_Replica(i, s) for i, s in enumerate(replicas)]
        self._public_key: bytes | None = None
        self._verify_key: VerifyKey | None = None
        self._failovers = 0
        self._exhausted = 0

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def public_key(self) -> bytes:
        if self._public_key is None:
            raise SignerError(f"replica set {self.name}: public key unknown before open()")
        return self._public_key

    async def open(self) -> None:
        results = await asyncio.gather(
            *(self._open_one(r) for r in self._replicas), return_exceptions=True
        )
        keys: dict[str, bytes] = {}
        for r, res in zip(self._replicas, results, strict=True):
            if isinstance(res, bytes):
                keys[r.name] = res
            elif isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res
                r.state, r.last_error = "down", _describe(res)
                r.errors += 1
                # the error names the replica; an auth failure is not "unreachable"
                log.warning("%s: replica down at start: %s", self.name, r.last_error)
        if not keys:
            detail = "; ".join(
                e if (e := r.last_error).startswith(r.name) else f"{r.name}: {e}"
                for r in self._replicas
            )
            await self.close()
            raise NoHealthyReplicaError(f"{self.name}: no replica could be opened ({detail})")
        if len(set(keys.values())) > 1:
            detail = ", ".join(f"{n}={k.hex()}" for n, k in keys.items())
            await self.close()
            raise KeyMismatchError(f"{self.name}: replicas disagree on the public key: {detail}")
        self._public_key = next(iter(keys.values()))
        self._verify_key = VerifyKey(self._public_key)
        for r in self._replicas:
            if r.name in keys:
                self._mark_up(r)
                r.last_probe = self._clock()
        up = [r.name for r in self._replicas if r.state == "up"]
        log.info(
            "%s: opened replicas %s (%d of %d up)", self.name, up, len(up), len(self._replicas)
        )

    async def _open_one(self, r: _Replica) -> bytes:
        await r.signer.open()
        r.opened = True
        return r.signer.public_key

    async def close(self) -> None:
        await asyncio.gather(*(r.signer.close() for r in self._replicas), return_exceptions=True)

    # --- signing -----------------------------------------------------------------------

    async def sign_traced(self, message: bytes, *, timeout: float | None = None) -> Signature:
        if self._verify_key is None:
            raise SignerError(f"replica set {self.name}: sign before open()")
        budget = self.default_timeout if timeout is None else timeout
        deadline = self._clock() + budget
        tried: set[int] = set()
        failures: list[str] = []
        last_failed = ""
        second_round = False
        while True:
            idx = choose_replica([r.view() for r in self._replicas], self.policy, frozenset(tried))
            if idx is None and not second_round and failures:
                # every replica failed once; a rebuilt session often works (a lost reply,
                # an expired session), and with one device there is nowhere else to go
                second_round = True
                tried.clear()
                idx = choose_replica([r.view() for r in self._replicas], self.policy)
            remaining = deadline - self._clock()
            if idx is None or remaining <= 0:
                self._exhausted += 1
                why = "; ".join(failures) or "no replica available"
                raise NoHealthyReplicaError(
                    f"{self.name}: no replica signed within {budget:.2f}s ({why})"
                )
            r = self._replicas[idx]
            tried.add(idx)
            if failures:
                self._failovers += 1
                self.observer.failover(self.name, last_failed, r.name)
                log.warning("%s: failing over to %s", self.name, r.name)
            if self.attempt_timeout is not None:
                remaining = min(remaining, self.attempt_timeout)
            try:
                return await self._sign_on(r, message, remaining)
            except asyncio.CancelledError:
                raise
            except _FailedMeanwhile as e:
                failures.append(f"{r.name}: {e}")
                last_failed = r.name
            except Exception as e:
                failures.append(f"{r.name}: {_describe(e)}")
                last_failed = r.name
                self._mark_down(r, e)

    async def _sign_on(self, r: _Replica, message: bytes, timeout: float) -> Signature:
        # a replica tried as a last resort is already down: only a fresh failure counts
        down = r.down_event if r.state == "up" else asyncio.Event()
        r.outstanding += 1
        r.assigned += 1
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
        except BaseException:
            self.observer.hsm_request(r.name, self._clock() - start, False)
            raise
        finally:
            r.outstanding -= 1
            watcher.cancel()
            if not attempt.done():
                attempt.cancel()
        r.signatures += 1
        r.last_latency = self._clock() - start
        self.observer.hsm_request(r.name, r.last_latency, True)
        return Signature(sig.signature, r.name)

    def _verify(self, r: _Replica, message: bytes, signature: bytes) -> None:
        assert self._verify_key is not None
        try:
            self._verify_key.verify(message, signature)
        except (BadSignatureError, ValueError, TypeError):
            raise SignerError(
                f"{r.name}: returned a signature that does not verify under "
                f"{self.name}'s public key"
            ) from None

    def _mark_down(self, r: _Replica, exc: BaseException) -> None:
        r.errors += 1
        r.last_error = _describe(exc)
        if r.state == "up":
            log.error("%s: replica %s marked down: %s", self.name, r.name, r.last_error)
        if r.state != "mismatch":
            r.state = "down"
        self.observer.hsm_health(r.name, False)
        r.down_event.set()
        r.last_probe = self._clock()

    def _mark_up(self, r: _Replica) -> None:
        if r.state != "up":
            r.down_event = asyncio.Event()
        r.state, r.last_error = "up", ""
        self.observer.hsm_health(r.name, True)

    # --- health --------------------------------------------------------------------------

    async def probe(self, r_index: int) -> None:
        """Probe one replica now: ping if up; re-open, ping and key-check if down."""
        r = self._replicas[r_index]
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
            self._mark_down(r, e)
            return
        if was != "up":
            log.info("%s: replica %s back in service", self.name, r.name)
        self._mark_up(r)

    async def _probe_inner(self, r: _Replica) -> None:
        if r.state != "up" or not r.opened:
            await r.signer.open()
            r.opened = True
            key = r.signer.public_key
            if self._public_key is not None and key != self._public_key:
                raise KeyMismatchError(
                    f"{r.name} reports public key {key.hex()}, the set's key is "
                    f"{self._public_key.hex()}"
                )
        if isinstance(r.signer, Pingable):
            await r.signer.ping(timeout=self.probe_timeout)

    def _due(self, r: _Replica, now: float) -> float:
        interval = self.health_interval if r.state == "up" else self.down_probe_interval
        return r.last_probe + interval

    async def check_health(self) -> None:
        """One round: probe every replica whose interval has elapsed, concurrently."""
        now = self._clock()
        due = [
            r.index for r in self._replicas if r.state != "mismatch" and self._due(r, now) <= now
        ]
        if due:
            await asyncio.gather(*(self.probe(i) for i in due))

    async def run_health(self, stop: asyncio.Event) -> None:
        """Run health rounds until `stop` is set (the supervisor owns this task)."""
        while not stop.is_set():
            await self.check_health()
            now = self._clock()
            pending = [self._due(r, now) for r in self._replicas if r.state != "mismatch"]
            wait = max(0.05, min(pending) - now) if pending else self.health_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)

    def health(self) -> Health:
        detail = ", ".join(
            f"{r.name}: {r.state}" + (f" ({r.last_error})" if r.last_error else "")
            for r in self._replicas
        )
        return Health(any(r.state == "up" for r in self._replicas), detail)

    def replica_health(self) -> dict[str, Health]:
        return {r.name: Health(r.state == "up", r.last_error or r.state) for r in self._replicas}

    @property
    def replicas(self) -> tuple[Signer, ...]:
        return tuple(r.signer for r in self._replicas)

    @property
    def stats(self) -> ReplicaSetStats:
        return ReplicaSetStats(
            name=self.name,
            failovers=self._failovers,
            exhausted=self._exhausted,
            replicas=tuple(
                ReplicaStats(
                    r.name,
                    r.state,
                    r.outstanding,
                    r.signatures,
                    r.errors,
                    r.last_error,
                    r.last_latency,
                )
                for r in self._replicas
            ),
        )
