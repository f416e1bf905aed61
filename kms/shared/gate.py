"""The shared-watermark gate: one linearizable compare-and-swap in etcd per new signature.

Owns: the per-chain cache of the etcd record and its mod_revision, the
decide / compare-and-swap / re-decide loop, and resolving a write whose outcome
is unknown (HA.md §3). Never signs, never touches the local state file (the
guard does both, after we allow), and has no rules of its own: every verdict is
`kms.state.machine.decide()` applied to the record.

Per request (the guard calls `authorize()` only after the local state said SIGN):
1. Take the cached record (read it with a linearizable Range if there is none).
2. decide() on it, with max_height lowered to the record's hand-over seal.
   - REFUSE: refuse. The cache only ever holds records read back from etcd or
     written by our own committed Txn, so it can be behind the truth, never
     ahead: a refusal on it is always right.
   - REUSE (same HRS, identical sign bytes, or a vote that differs only in its
     timestamp): no write; the guard signs the STORED sign bytes (Ed25519 is
     deterministic, so this is the signature any host already produced) and
     answers with the stored timestamp.
   - SIGN: Txn(If mod_revision == cached Then Put(new record, fresh write ID)
     Else Range). Committed: allowed. Not committed: the Range result becomes
     the cache and we decide again, at most `max_attempts` times, then refuse.
3. Outcome unknown (timeout, connection lost after sending): read the key back.
   Our write ID there means it committed; anything else is decided on again;
   no answer means refuse (SharedStateError).
4. etcd unreachable, no quorum, auth failure, a record that does not decode or
   is missing: SharedStateError (the service refuses with the reason; metric
   kms_shared_state_total{result="unavailable"|"bad_record"}). Nothing falls
   back to local-only signing.

With a host preference (kms.shared.preference), a host that is not preferred
sleeps `delay` before its Txn; nothing else changes.

Safety never depends on timing, leases or which host is "first": two hosts can
only both pass step 2 for the same (H, R, S) if the same record allowed both,
i.e. the same sign bytes (or, for a vote, the stored bytes they both sign).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from kms.errors import SharedStateAmbiguous, SharedStateError
from kms.privval.messages import Timestamp
from kms.refusal import Refusal, RefusalCarrier
from kms.shared.etcd import EtcdClient, KeyValue
from kms.shared.preference import Preference
from kms.shared.record import Record, decode, encode, watermark_key
from kms.state.machine import Action, SignCandidate, SignState, decide

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 5


class GateObserver(Protocol):
    def shared_state(self, chain: str, result: str) -> None: ...


@dataclass(frozen=True, slots=True)
class GateVerdict(RefusalCarrier):
    """What the guard does next.

    allowed: sign `sign_bytes`, answer with `timestamp`, then persist `state`
    (the local state after signing, without its signature, which the guard adds).
    Refused: answer with `refusal` (kms.refusal).
    """

    rule: str
    sign_bytes: bytes = b""
    timestamp: Timestamp | None = None
    state: SignState | None = None
    refusal: Refusal | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def missing_record_message(chain_id: str, key: bytes) -> str:
    return (
        f"chain {chain_id!r}: no shared watermark at {key.decode()} in etcd; initialise it"
        f" from this host's state file with: kms state push -c CONFIG --chain-id {chain_id}"
    )


class SharedGate:
    """The etcd gate for one chain; one request at a time (the guard's lock)."""

    def __init__(
        self,
        client: EtcdClient,
        *,
        prefix: str,
        chain_id: str,
        host_id: str,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        observer: GateObserver | None = None,
        clock: Callable[[], datetime] = _utc_now,
        new_write_id: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self.client = client
        self.chain_id = chain_id
        self.host_id = host_id
        self.key = watermark_key(prefix, chain_id)
        self.max_attempts = max_attempts
        self._observer = observer
        self._clock = clock
        self._new_write_id = new_write_id
        self._cache: tuple[Record, int] | None = None
        self.preference: Preference | None = None  # optional; a hint, never a fence

    @property
    def cached(self) -> Record | None:
        return self._cache[0] if self._cache is not None else None

    def _count(self, result: str) -> None:
        if self._observer is not None:
            self._observer.shared_state(self.chain_id, result)

    def _adopt(self, kv: KeyValue | None) -> tuple[Record, int]:
        if kv is None:
            self._cache = None
            self._count("bad_record")
            raise SharedStateError(missing_record_message(self.chain_id, self.key))
        try:
            rec = decode(kv.value)
        except SharedStateError as e:
            self._cache = None
            self._count("bad_record")
            raise SharedStateError(f"chain {self.chain_id!r}: {self.key.decode()}: {e}") from None
        self._cache = (rec, kv.mod_revision)
        return self._cache

    async def _read(self) -> tuple[Record, int]:
        try:
            kv = await self.client.get(self.key)
        except SharedStateError:
            self._count("unavailable")
            raise
        return self._adopt(kv)

    async def load(self) -> Record:
        """Read the record now (start-up check); SharedStateError if missing or bad."""
        return (await self._read())[0]

    async def authorize(self, cand: SignCandidate, *, max_height: int | None) -> GateVerdict:
        cached = self._cache or await self._read()
        waited = False
        for _attempt in range(self.max_attempts):
            rec, rev = cached
            cap = max_height
            if rec.sealed_at is not None:
                cap = rec.sealed_at if cap is None else min(cap, rec.sealed_at)
            d = decide(rec.sign_state(), cand, max_height=cap)
            if d.action is Action.REFUSE:
                self._count("refused")
                assert d.refusal is not None
                reason = f"shared watermark ({rec.host}): {d.refusal.reason}"
                if rec.sealed_at is not None and d.rule == "max-height":
                    reason += " (the shared watermark is sealed for a hand-over)"
                return GateVerdict(d.rule, refusal=replace(d.refusal, reason=reason))
            if d.action is Action.REUSE:
                # Never d.signature: the record holds a marker, not a signature.
                self._count("reused")
                state = SignState(rec.height, rec.round, rec.step, rec.block_id, rec.sign_bytes)
                return GateVerdict(d.rule, rec.sign_bytes, d.timestamp, state)
            if not waited and self.preference is not None and self.preference.delay() > 0:
                # Another host is preferred: let it write first; our Txn then fails its
                # compare (or finds nothing written) and we decide again on the truth.
                waited = True
                await asyncio.sleep(self.preference.delay())
            new = Record(
                cand.height, cand.round, cand.step, cand.block_id, cand.sign_bytes,
                self.host_id, self._new_write_id(), self._clock(), rec.sealed_at,
            )  # fmt: skip
            committed = await self._write(new, rev)
            if committed is not None:
                self._cache = (new, committed)
                self._count("committed")
                state = SignState(
                    cand.height, cand.round, cand.step, cand.block_id, cand.sign_bytes
                )
                return GateVerdict(d.rule, cand.sign_bytes, cand.timestamp, state)
            assert self._cache is not None
            cached = self._cache
        self._count("contention")
        return GateVerdict(
            "contention",
            # generic and transient: not a double sign
            refusal=Refusal(
                "contention",
                f"shared watermark kept moving ({self.max_attempts} attempts); refusing",
            ),
        )

    async def _write(self, new: Record, rev: int) -> int | None:
        """The Txn; the new mod_revision if committed, None (cache refreshed) if not."""
        try:
            res = await self.client.cas(self.key, rev, encode(new))
        except SharedStateAmbiguous as e:
            self._count("ambiguous")
            log.warning("chain %s: %s; reading the record back", self.chain_id, e)
            try:
                kv = await self.client.get(self.key)
            except SharedStateError:
                self._count("unavailable")
                raise
            if kv is not None:
                rec, mod = self._adopt(kv)
                if rec.write_id == new.write_id:
                    return mod
                self._count("conflict")
            else:
                self._adopt(kv)
            return None
        except SharedStateError:
            self._count("unavailable")
            raise
        if res.succeeded:
            return res.revision
        self._count("conflict")
        self._adopt(res.current)
        return None
