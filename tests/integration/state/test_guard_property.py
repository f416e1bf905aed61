"""Random request sequences from several concurrent links through one ChainGuard.

A hypothesis RuleBasedStateMachine drives bursts of concurrent vote and proposal
requests (small height/round space, so repeats and conflicts are frequent),
signer failures, disk faults and restarts. Every emitted signature goes to the
independent `Checker`; the persisted state is read back after every step and must
never go backwards nor fall below anything emitted.
"""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kms.errors import SignerError, StatePersistError
from kms.privval.messages import BlockID, Proposal, Vote
from kms.signer.base import Signature
from kms.state.guard import ChainGuard, GuardResult
from kms.state.machine import SignState
from kms.state.store import FileOps, StateStore
from tests.integration.state.checker import Checker
from tests.unit.state.helpers import CHAIN, NIL, SoftSigner, block, proposal, vote

BLOCKS = [NIL, block(0xA1), block(0xB2), block(0xA1, 0xC3)]


class FlakyOps(FileOps):
    """Fails the next `failures` syncs of a state write (fdatasync) with EIO."""

    def __init__(self) -> None:
        self.failures = 0

    def fdatasync(self, fd: int) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EIO, "Input/output error")
        super().fdatasync(fd)


def requests() -> st.SearchStrategy[Vote | Proposal]:
    height = st.integers(1, 4)
    round_ = st.integers(0, 2)
    blk = st.sampled_from(BLOCKS)
    t = st.integers(1, 3)
    votes = st.builds(
        lambda ty, h, r, b, tt, ext: vote(ty, h, r, b, t=tt, extension=ext if ty == 2 else b""),
        st.sampled_from([1, 2]),
        height,
        round_,
        blk,
        t,
        st.sampled_from([b"", b"x"]),
    )
    proposals = st.builds(
        lambda h, r, b, pol, tt: proposal(h, r, b if not b.is_nil else BLOCKS[1], pol, t=tt),
        height,
        round_,
        blk,
        st.integers(-1, 1),
        t,
    )
    return st.one_of(votes, proposals)


class GuardMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "chain.json"
        StateStore.create(self.path, SignState.initial())
        self.ops = FlakyOps()
        self.loop = asyncio.new_event_loop()
        self.signer = SoftSigner()
        self.checker = Checker(self.signer.verify_key, CHAIN)
        self.signer_broken = False
        self.last_persisted = (0, 0, 0)
        self.guard = self._open()

    def _open(self) -> ChainGuard:
        async def make() -> ChainGuard:
            return ChainGuard(CHAIN, StateStore(self.path, ops=self.ops))

        return self.loop.run_until_complete(make())

    async def _sign(self, message: bytes) -> Signature:
        await asyncio.sleep(0)  # let other links interleave
        if self.signer_broken:
            raise SignerError("replica down")
        return await self.signer(message)

    async def _one(self, link: int, msg: Vote | Proposal, yields: int) -> GuardResult | None:
        for _ in range(yields):
            await asyncio.sleep(0)
        try:
            if isinstance(msg, Vote):
                return await self.guard.sign_vote(msg, self._sign)
            return await self.guard.sign_proposal(msg, self._sign)
        except (SignerError, StatePersistError):
            return None

    @rule(
        burst=st.lists(
            st.tuples(st.integers(0, 3), requests(), st.integers(0, 3)), min_size=1, max_size=5
        )
    )
    def links_send_requests(self, burst: list[tuple[int, Any, int]]) -> None:
        async def run() -> list[GuardResult | None]:
            return await asyncio.gather(*(self._one(*item) for item in burst))

        for result in self.loop.run_until_complete(run()):
            if result is not None and result.outcome in ("signed", "reused"):
                self.checker.emitted(result.sign_bytes, result.signature)
                assert result.replica == ("soft" if result.outcome == "signed" else None)
            elif result is not None:
                assert result.signature == b"" and result.error_code in (1, 2, 3)

    @rule(failures=st.integers(1, 3))
    def disk_fails(self, failures: int) -> None:
        self.ops.failures = failures

    @rule(broken=st.booleans())
    def signer_breaks_or_heals(self, broken: bool) -> None:
        self.signer_broken = broken

    @precondition(lambda self: self.ops.failures == 0)
    @rule()
    def restart(self) -> None:
        self.guard.close()
        self.guard = self._open()

    @invariant()
    def persisted_state_never_goes_backwards_nor_below_what_was_emitted(self) -> None:
        on_disk = StateStore(self.path).load()
        assert on_disk.hrs >= self.last_persisted
        assert on_disk.hrs >= self.checker.highest()
        assert on_disk.hrs >= self.guard.state.hrs
        self.last_persisted = on_disk.hrs

    def teardown(self) -> None:
        self.guard.close()
        self.loop.close()
        self.dir.cleanup()


GuardMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("KMS_PROPERTY_EXAMPLES", "200")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGuardNeverDoubleSigns = GuardMachine.TestCase


def test_checker_catches_a_double_sign() -> None:
    """The checker itself must be able to fail."""
    import pytest
    from nacl.signing import SigningKey

    from kms.privval import canonical

    key = SigningKey(bytes(32))
    checker = Checker(key.verify_key, CHAIN)
    for blk in (BLOCKS[1], BLOCKS[2]):
        sb = canonical.vote_sign_bytes(CHAIN, vote(1, 5, 0, blk))
        if blk == BLOCKS[1]:
            checker.emitted(sb, key.sign(sb).signature)
        else:
            with pytest.raises(AssertionError, match="5, 0, 1"):
                checker.emitted(sb, key.sign(sb).signature)
    nil = canonical.vote_sign_bytes(CHAIN, vote(2, 6, 0, NIL))
    checker.emitted(nil, key.sign(nil).signature)
    blk_sb = canonical.vote_sign_bytes(CHAIN, vote(2, 6, 0, BlockID(b"\x01" * 32)))
    with pytest.raises(AssertionError):
        checker.emitted(blk_sb, key.sign(blk_sb).signature)
    p1 = canonical.proposal_sign_bytes(CHAIN, proposal(7, 0, BLOCKS[1], t=1))
    p2 = canonical.proposal_sign_bytes(CHAIN, proposal(7, 0, BLOCKS[1], t=2))
    p3 = canonical.proposal_sign_bytes(CHAIN, proposal(7, 0, BLOCKS[2], t=2))
    checker.emitted(p1, key.sign(p1).signature)
    checker.emitted(p2, key.sign(p2).signature)  # same block, new timestamp: fine
    with pytest.raises(AssertionError, match="double sign"):
        checker.emitted(p3, key.sign(p3).signature)
