"""A precommit and its vote extension signed at once on two replicas, never ahead of the guard.

Real guard (a state file in tmp), real Ed25519 keys in device-like fake replicas
(one request at a time, a fixed latency) behind a real ReplicaSet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey, VerifyKey

from kms.config import ChainConfig, KeyFormat
from kms.errors import SignerError, StatePersistError
from kms.privval import canonical
from kms.privval.messages import (
    BlockID,
    Dialect,
    PartSetHeader,
    SignedMsgType,
    SignedVoteResponse,
    SignVoteRequest,
    Timestamp,
    Vote,
)
from kms.service import Chain, LinkInfo, SignService
from kms.signer.base import Signature, Signer
from kms.signer.replicas import ReplicaSet
from kms.signer.softsign import SoftSigner
from kms.state.guard import ChainGuard
from kms.state.machine import SignState
from kms.state.store import StateStore
from tests.unit.signer.fakes import FakeReplica

CHAIN = "ext-chain"
SEED = bytes(range(32))
BLOCK = BlockID(b"\x11" * 32, PartSetHeader(1, b"\x22" * 32))
OTHER = BlockID(b"\x33" * 32, PartSetHeader(1, b"\x44" * 32))
TS = Timestamp(1_700_000_000, 5)
LATENCY = 0.1
LINK = LinkInfo(CHAIN, Dialect.V0_38, "test-link")


def precommit(height: int = 5, block: BlockID = BLOCK, ext: bytes = b"app-data") -> Vote:
    return Vote(
        type=SignedMsgType.PRECOMMIT,
        height=height,
        round=0,
        block_id=block,
        timestamp=TS,
        validator_address=b"\x01" * 20,
        extension=ext,
    )


def verify(sign_bytes: bytes, sig: bytes) -> None:
    VerifyKey(bytes(SigningKey(SEED).verify_key)).verify(sign_bytes, sig)


def service(tmp_path: Path, signer: Signer) -> Iterator[SignService]:
    state = tmp_path / "state.json"
    StateStore.create(state, SignState.initial())
    cfg = ChainConfig(id=CHAIN, key_format=KeyFormat(), state_file=state)
    guard = ChainGuard(CHAIN, StateStore(state))
    try:
        yield SignService({CHAIN: Chain(cfg, guard, signer)})
    finally:
        guard.close()


async def replica_set(n: int) -> tuple[ReplicaSet, list[FakeReplica]]:
    reps = [FakeReplica(f"hsm-{chr(97 + i)}", SEED, latency=LATENCY, serial=True) for i in range(n)]
    rs = ReplicaSet(CHAIN, reps, policy="spread")
    await rs.open()
    return rs, reps


async def signed(svc: SignService, vote: Vote) -> tuple[SignedVoteResponse, float]:
    t0 = time.monotonic()
    r = await svc.handle(SignVoteRequest(vote, CHAIN), LINK)
    assert isinstance(r, SignedVoteResponse)
    return r, time.monotonic() - t0


async def test_vote_and_extension_are_signed_at_once_on_two_replicas(tmp_path: Path) -> None:
    rs, reps = await replica_set(3)
    for svc in service(tmp_path, rs):
        v = precommit()
        r, elapsed = await signed(svc, v)
        assert r.error is None and r.vote is not None
        verify(canonical.vote_sign_bytes(CHAIN, r.vote), r.vote.signature)
        ext_bytes = canonical.vote_extension_sign_bytes(CHAIN, v)
        verify(ext_bytes, r.vote.extension_signature)
        signers = {m: rep.name for rep in reps for m in rep.signed}
        assert signers[ext_bytes] != signers[canonical.vote_sign_bytes(CHAIN, v)]
        # one device latency (plus the state write), not two
        assert elapsed < 1.6 * LATENCY, elapsed


async def test_one_replica_signs_vote_and_extension_one_after_the_other(tmp_path: Path) -> None:
    rs, reps = await replica_set(1)
    for svc in service(tmp_path, rs):
        r, elapsed = await signed(svc, precommit())
        assert r.error is None and r.vote is not None and r.vote.extension_signature
        assert elapsed >= 2 * LATENCY
        assert reps[0].max_in_flight == 1


async def test_no_extension_is_signed_for_a_vote_the_guard_refuses(tmp_path: Path) -> None:
    rs, reps = await replica_set(2)
    for svc in service(tmp_path, rs):
        await signed(svc, precommit())
        conflicting = precommit(block=OTHER, ext=b"other-app-data")
        r, _ = await signed(svc, conflicting)
        assert r.error is not None and r.error.code == 2 and r.vote is None
        ext_bytes = canonical.vote_extension_sign_bytes(CHAIN, conflicting)
        assert all(ext_bytes not in rep.signed for rep in reps)


async def test_no_extension_signature_leaves_when_the_vote_state_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rs, _ = await replica_set(2)
    for svc in service(tmp_path, rs):
        guard = svc.chain(CHAIN).guard

        def failing_save(state: SignState) -> None:
            raise StatePersistError("disk full")

        monkeypatch.setattr(guard.store, "save", failing_save)
        r, _ = await signed(svc, precommit())
        assert r.error is not None and "disk full" in r.error.description
        assert r.vote is None  # neither the vote nor its extension signature


class FlakyExtension(Signer):
    """A software key whose signatures over `failing` fail the first `fail` times."""

    name = "flaky"

    def __init__(self, failing: bytes, fail: int) -> None:
        self._soft = SoftSigner(SEED)
        self.failing = failing
        self.fail = fail

    @property
    def public_key(self) -> bytes:
        return self._soft.public_key

    @property
    def parallel_capacity(self) -> int:
        return 2  # takes the at-once path (Signer.start_signing: here one after the other)

    async def sign_traced(self, message: bytes, *, timeout: float | None = None) -> Signature:
        if message == self.failing and self.fail:
            self.fail -= 1
            raise SignerError("extension: device busy")
        return await self._soft.sign_traced(message, timeout=timeout)


async def test_an_extension_that_failed_alongside_the_vote_is_tried_again(
    tmp_path: Path,
) -> None:
    signer = FlakyExtension(canonical.vote_extension_sign_bytes(CHAIN, precommit()), fail=1)
    for svc in service(tmp_path, signer):
        r, _ = await signed(svc, precommit())
        assert r.error is None and r.vote is not None
        verify(canonical.vote_extension_sign_bytes(CHAIN, precommit()), r.vote.extension_signature)


async def test_extension_failing_twice_refuses_and_the_retry_reuses_the_vote(
    tmp_path: Path,
) -> None:
    signer = FlakyExtension(canonical.vote_extension_sign_bytes(CHAIN, precommit()), fail=2)
    for svc in service(tmp_path, signer):
        r, _ = await signed(svc, precommit())
        assert r.error is not None and "vote extension" in r.error.description
        assert svc.chain(CHAIN).guard.state.height == 5  # the vote itself was persisted
        again, _ = await signed(svc, precommit())
        assert again.error is None and again.vote is not None
        assert again.vote.extension_signature
