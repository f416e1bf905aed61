"""The per-chain double-sign guard: decide -> sign -> persist -> reply, under one lock.

Owns: the ordering and durability of signing for one chain. One `ChainGuard` per
chain is shared by every link (validator connection) of that chain, and its
`asyncio.Lock` serialises their requests. Never parses the wire, checks the
request's chain ID (the caller compares it with the configured one and hands us
the configured ID), or talks to devices (the caller passes a `sign` callback).

Rules:
- Under the lock: `decide()`; on SIGN call `sign(sign_bytes)`, write the new
  state (in place and fdatasync'ed, `kms.state.store`; on the chain's write thread, off
  the event loop) and only then return the signature. REUSE returns the stored signature
  (and, for a vote, the stored timestamp) without signing or writing.
- Any exception from `sign` or from the write propagates (SignerError,
  StatePersistError): no signature leaves the guard and the in-memory state is
  not advanced.
- After a failed or interrupted write, the guard re-reads the state file before
  it signs again, writes it back durably (what it read may only be in the page
  cache) and adopts it (the old or the new state: either is safe, the
  unreleased signature is at most reused for the same message).
  While the file is unreadable, or if it went backwards, every request fails
  (fail closed); once it reads back, signing resumes.
- The state file lock is held for the guard's lifetime: no second process (or
  `kms state set`) can write the same file meanwhile. `close()` releases it
  last, after every write has finished and the write thread has stopped: a write
  still running after the lock is gone would let a second process go back in
  time (its late write lands on top of the other process's newer state).
- At start-up, before serving: a format-1 file is converted to format 2 once,
  the stored sign bytes must name this chain, and what was loaded is made
  durable (fsync of the file and its directory), because a previous process may
  have died between its write and its sync, and a stored signature must never
  be re-sent from a state that is only in the page cache.
- Audit lines are queued after the state is persisted and never block.
- With a shared watermark (`gate`, kms.shared.gate), a local SIGN also needs the
  gate's etcd compare-and-swap, before the HSM signs: etcd commit -> sign ->
  state file durable -> reply. The gate may refuse, or allow signing the sign
  bytes stored in etcd (another host's identical message) instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from kms.config import ChainConfig
from kms.errors import BadState, CodecError, EncodeError, SignerError, StateFileError, describe
from kms.privval.messages import Proposal, Timestamp, Vote
from kms.refusal import Code, Refusal, RefusalCarrier
from kms.signer.base import Signature
from kms.state.audit import AuditEntry, AuditLog, Outcome
from kms.state.format1 import check_chain
from kms.state.machine import (
    Action,
    SignCandidate,
    SignState,
    advance,
    decide,
)
from kms.state.store import StateStore
from kms.state.writer import WriteThread

if TYPE_CHECKING:
    from kms.shared.gate import SharedGate

log = logging.getLogger(__name__)

SIGNATURE_SIZE = 64
SignCallback = Callable[[bytes], Awaitable[Signature]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GuardResult(RefusalCarrier):
    outcome: Literal["signed", "reused", "refused"]
    signature: bytes  # b"" when refused
    timestamp: Timestamp  # the timestamp actually signed (the stored one on REUSE of a vote)
    sign_bytes: bytes
    refusal: Refusal | None  # refusals: the rule's own value, passed on to reply and metric
    replica: str | None  # Signature.by

    @classmethod
    def refused(cls, refusal: Refusal, timestamp: Timestamp, sign_bytes: bytes) -> GuardResult:
        return cls("refused", b"", timestamp, sign_bytes, refusal, None)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ChainGuard:
    """Double-sign protection for one chain; see the module docstring."""

    # Optional shared watermark (several signer hosts, kms.shared): set after
    # construction by the supervisor; None signs on the local state alone.
    gate: SharedGate | None = None

    def __init__(
        self,
        chain_id: str,
        store: StateStore,
        *,
        max_height: int | None = None,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Lock and load the state file (StateFileError if it is missing or unusable)."""
        self.chain_id = chain_id
        self.store = store
        self.max_height = max_height
        self.audit = audit
        self._clock = clock
        self._file_lock = store.lock()
        try:
            self._state = self._load_for_serving()
        except BaseException:
            store.close()
            self._file_lock.release()
            raise
        # one thread per chain for its file work: writes never overlap and never
        # block the event loop (kms.state.writer: about half the CPU of an executor hop)
        self._writer = WriteThread(f"state-{chain_id}")
        self._lock = asyncio.Lock()
        self._needs_verify = False
        self._inflight: asyncio.Future[Any] | None = None

    @classmethod
    def open(cls, chain: ChainConfig) -> ChainGuard:
        """The guard for a configured chain: state file locked and loaded, audit log opened."""
        audit = AuditLog(chain.audit_log) if chain.audit_log is not None else None
        try:
            return cls(
                chain.id, StateStore(chain.state_file), max_height=chain.max_height, audit=audit
            )
        except BaseException:
            if audit is not None:
                audit.close()
            raise

    @property
    def state(self) -> SignState:
        """The last state known to be on disk."""
        return self._state

    def close(self) -> None:
        """Wait for every write, stop the write thread, flush the audit log; release the lock last.

        Blocks while a write is still running (a stalled disk): releasing the
        lock before it ends is the one thing that must never happen.
        """
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            log.warning(
                "chain %s: waiting for a state write to finish before releasing %s",
                self.chain_id,
                self.store.path,
            )
        self._writer.close()  # runs what is queued, then joins: nothing runs after this
        self.store.close()
        if self.audit is not None:
            self.audit.close()
        self._file_lock.release()

    def _load_for_serving(self) -> SignState:
        """Load, convert, check the chain and make durable (start-up rules above)."""
        if self.store.convert():
            log.warning(
                "chain %s: converted state file %s from format 1 (JSON) to format 2",
                self.chain_id,
                self.store.path,
            )
        state = self.store.load()
        try:
            check_chain(state, self.chain_id)
        except BadState as e:
            raise StateFileError(f"state file {self.store.path} {e}") from None
        self.store.make_durable()
        return state

    async def sign_vote(self, vote: Vote, sign: SignCallback) -> GuardResult:
        try:
            cand = SignCandidate.for_vote(self.chain_id, vote)
        except (ValueError, CodecError, EncodeError) as e:
            return self._invalid(vote.timestamp, str(e))
        return await self._guarded(cand, sign)

    async def sign_proposal(self, proposal: Proposal, sign: SignCallback) -> GuardResult:
        try:
            cand = SignCandidate.for_proposal(self.chain_id, proposal)
        except (ValueError, CodecError, EncodeError) as e:
            return self._invalid(proposal.timestamp, str(e))
        return await self._guarded(cand, sign)

    # --- internals ----------------------------------------------------------------

    async def _guarded(self, cand: SignCandidate, sign: SignCallback) -> GuardResult:
        async with self._lock:
            if self._needs_verify:
                await self._reverify()
            decision = decide(self._state, cand, max_height=self.max_height)
            if decision.action is Action.REFUSE:
                assert decision.refusal is not None
                self._audit(cand, "refused", reason=decision.refusal.reason)
                return GuardResult.refused(decision.refusal, cand.timestamp, cand.sign_bytes)
            if decision.action is Action.REUSE:
                assert decision.timestamp is not None
                self._audit(cand, "reused", reason=decision.rule)
                return GuardResult(
                    "reused",
                    decision.signature,
                    decision.timestamp,
                    decision.sign_bytes,
                    None,
                    None,
                )
            sign_bytes, timestamp, base = decision.sign_bytes, cand.timestamp, None
            if self.gate is not None:
                # Shared watermark (kms.shared.gate): etcd commit -> sign -> persist -> reply.
                try:
                    verdict = await self.gate.authorize(cand, max_height=self.max_height)
                except BaseException as e:
                    self._audit(cand, "error", reason=describe(e))
                    raise
                if verdict.refusal is not None:
                    self._audit(cand, "refused", reason=verdict.refusal.reason)
                    return GuardResult.refused(verdict.refusal, cand.timestamp, cand.sign_bytes)
                assert verdict.timestamp is not None and verdict.state is not None
                sign_bytes, timestamp, base = verdict.sign_bytes, verdict.timestamp, verdict.state
            try:
                sig = await sign(sign_bytes)
                if len(sig.signature) != SIGNATURE_SIZE:
                    raise SignerError(
                        f"signer {sig.by} returned a {len(sig.signature)}-byte signature"
                    )
                if base is None:
                    new_state = advance(cand, sig.signature, self._clock())
                else:
                    new_state = replace(base, signature=sig.signature, updated_at=self._clock())
                await self._persist(new_state)
            except BaseException as e:
                self._audit(cand, "error", reason=describe(e))
                raise
            self._state = new_state
            # (with a gate, what was signed may be the stored message, not the request's)
            signed = replace(cand, sign_bytes=sign_bytes, timestamp=timestamp)
            self._audit(signed, "signed", replica=sig.by, also_sent_to=sig.also_sent_to)
            return GuardResult("signed", sig.signature, timestamp, sign_bytes, None, sig.by)

    async def _offload(self, fn: Callable[[], T]) -> T:
        """Run file work on the write thread; on any failure or cancellation, re-verify later.

        The future is shielded and remembered: a cancelled caller does not stop
        the write, and the next request waits for it before reading the file.
        """
        work = self._writer.submit(fn)
        self._inflight = work  # close() waits for it before releasing the lock
        try:
            result = await asyncio.shield(work)
        except BaseException as e:
            # The file now holds the old or the new state; find out before signing again.
            self._needs_verify = True
            if not isinstance(e, asyncio.CancelledError):
                log.error("chain %s: %s; not signing until it reads back", self.chain_id, e)
            raise
        self._inflight = None
        return result

    async def _persist(self, new_state: SignState) -> None:
        await self._offload(functools.partial(self.store.save, new_state))

    async def _reverify(self) -> None:
        if self._inflight is not None:
            # an interrupted write: let it finish
            await asyncio.wait([self._inflight])
            self._inflight = None
        disk = await self._offload(self.store.load)
        if disk.hrs < self._state.hrs:
            raise StateFileError(
                f"state file {self.store.path} went backwards: it holds "
                f"{disk.height}/{disk.round}/{disk.step}, but "
                f"{self._state.height}/{self._state.round}/{self._state.step} was persisted"
            )
        # What we read may be only in the page cache (a failed fsync): write it
        # again, durably, before anything is signed or reused on top of it.
        await self._offload(functools.partial(self.store.save, disk))
        self._state = disk
        self._needs_verify = False
        log.warning(
            "chain %s: state file %s reads back; signing resumes", self.chain_id, self.store.path
        )

    def _invalid(self, timestamp: Timestamp, why: str) -> GuardResult:
        refusal = Refusal.by_rule("invalid", f"invalid request: {why}", Code.INVALID)
        return GuardResult.refused(refusal, timestamp, b"")

    def _audit(
        self,
        cand: SignCandidate,
        outcome: Outcome,
        *,
        reason: str | None = None,
        replica: str | None = None,
        also_sent_to: tuple[str, ...] = (),
    ) -> None:
        if self.audit is None:
            return
        self.audit.record(
            AuditEntry.make(
                time=self._clock(),
                chain=self.chain_id,
                height=cand.height,
                round=cand.round,
                step=cand.step,
                block_id=cand.block_id,
                sign_bytes=cand.sign_bytes,
                outcome=outcome,
                reason=reason,
                replica=replica,
                also_sent_to=also_sent_to,
            )
        )
