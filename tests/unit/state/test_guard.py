"""ChainGuard: decide -> sign -> persist -> reply, under one lock per chain."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms.config import ChainConfig, KeyFormat
from kms.errors import SignerError, StateFileError
from kms.privval import canonical
from kms.refusal import Code
from kms.signer.base import Signature
from kms.state.audit import AuditEntry, AuditLog, read_audit
from kms.state.guard import ChainGuard
from kms.state.machine import SignState
from kms.state.store import FileOps, StateStore
from tests.unit.state.helpers import (
    CHAIN,
    NIL,
    PRECOMMIT,
    PREVOTE,
    SoftSigner,
    block,
    proposal,
    vote,
)

A, B = block(0xAA), block(0xBB)


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "chain.json"
    StateStore.create(path, SignState.initial())
    return path


@pytest.fixture
def guard(state_path: Path) -> Iterator[ChainGuard]:
    g = ChainGuard(CHAIN, StateStore(state_path))
    yield g
    g.close()


async def test_signature_is_on_disk_before_it_is_returned(
    guard: ChainGuard, state_path: Path
) -> None:
    signer = SoftSigner()
    r = await guard.sign_vote(vote(PREVOTE, 3, 0, A), signer)
    assert r.outcome == "signed" and r.replica == "soft" and r.error_code == 0
    signer.verify_key.verify(r.sign_bytes, r.signature)
    assert r.sign_bytes == canonical.vote_sign_bytes(CHAIN, vote(PREVOTE, 3, 0, A))
    on_disk = StateStore(state_path).load()
    assert on_disk == guard.state
    assert (on_disk.hrs, on_disk.signature, on_disk.block_id) == ((3, 0, 1), r.signature, A)


async def test_repeat_reuses_without_signing_or_writing(
    guard: ChainGuard, state_path: Path
) -> None:
    signer = SoftSigner()
    first = await guard.sign_vote(vote(PREVOTE, 3, 0, A, t=100), signer)
    mtime = state_path.stat().st_mtime_ns
    again = await guard.sign_vote(vote(PREVOTE, 3, 0, A, t=555), signer)
    assert again.outcome == "reused"
    assert (again.signature, again.timestamp, again.sign_bytes) == (
        first.signature,
        first.timestamp,
        first.sign_bytes,
    )
    assert signer.calls == 1
    assert state_path.stat().st_mtime_ns == mtime


async def test_conflict_is_refused_with_code_2_and_no_signing(guard: ChainGuard) -> None:
    signer = SoftSigner()
    await guard.sign_vote(vote(PREVOTE, 3, 0, A), signer)
    r = await guard.sign_vote(vote(PREVOTE, 3, 0, B), signer)
    assert (r.outcome, r.signature, r.error_code, r.replica) == (
        "refused",
        b"",
        Code.DOUBLE_SIGN,
        None,
    )
    assert r.reason is not None and r.reason.startswith("double signing requested at height 3")
    assert signer.calls == 1


async def test_proposal_with_new_timestamp_is_signed_again_and_stored(guard: ChainGuard) -> None:
    signer = SoftSigner()
    first = await guard.sign_proposal(proposal(4, 0, A, t=1), signer)
    second = await guard.sign_proposal(proposal(4, 0, A, t=2), signer)
    assert (first.outcome, second.outcome) == ("signed", "signed")
    assert guard.state.sign_bytes == second.sign_bytes != first.sign_bytes


async def test_signer_failure_returns_nothing_and_does_not_advance(
    guard: ChainGuard, state_path: Path
) -> None:
    async def broken(message: bytes) -> Signature:
        raise SignerError("hsm-a: device gone")

    before = guard.state
    with pytest.raises(SignerError):
        await guard.sign_vote(vote(PREVOTE, 3, 0, A), broken)
    assert guard.state == before == StateStore(state_path).load()
    # the same request then signs normally
    assert (await guard.sign_vote(vote(PREVOTE, 3, 0, A), SoftSigner())).outcome == "signed"


async def test_malformed_signature_from_signer_is_not_released(guard: ChainGuard) -> None:
    async def short(message: bytes) -> Signature:
        return Signature(b"\x00" * 10, "weird")

    with pytest.raises(SignerError, match="10-byte"):
        await guard.sign_vote(vote(PREVOTE, 3, 0, A), short)
    assert guard.state.height == 0


async def test_concurrent_links_are_serialised_and_only_one_block_is_signed(
    guard: ChainGuard,
) -> None:
    active = 0
    overlap = False
    inner = SoftSigner()

    async def slow(message: bytes) -> Signature:
        nonlocal active, overlap
        active += 1
        overlap |= active > 1
        await asyncio.sleep(0.01)
        active -= 1
        return await inner(message)

    results = await asyncio.gather(
        *(guard.sign_vote(vote(PREVOTE, 9, 0, blk), slow) for blk in (A, B, A, B, NIL))
    )
    assert not overlap
    outcomes = [r.outcome for r in results]
    assert outcomes[0] == "signed" and outcomes.count("signed") == 1
    assert {r.sign_bytes for r in results if r.outcome != "refused"} == {results[0].sign_bytes}


async def test_fsync_runs_off_the_event_loop(state_path: Path) -> None:
    release = threading.Event()

    class SlowSync(FileOps):
        def fdatasync(self, fd: int) -> None:
            release.wait(5)
            super().fdatasync(fd)

    g = ChainGuard(CHAIN, StateStore(state_path, ops=SlowSync()))
    try:
        task = asyncio.create_task(g.sign_vote(vote(PREVOTE, 3, 0, A), SoftSigner()))
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 5 and not task.done()  # the loop kept running during the fsync
        release.set()
        assert (await task).outcome == "signed"
    finally:
        release.set()
        g.close()


async def test_cancelled_write_is_verified_before_the_next_signature(state_path: Path) -> None:
    release = threading.Event()

    class SlowSync(FileOps):
        def fdatasync(self, fd: int) -> None:
            release.wait(5)
            super().fdatasync(fd)

    g = ChainGuard(CHAIN, StateStore(state_path, ops=SlowSync()))
    try:
        task = asyncio.create_task(g.sign_vote(vote(PREVOTE, 3, 0, A), SoftSigner()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert g.state.height == 0  # not advanced in memory
        release.set()
        # the interrupted write completed on disk: the conflicting vote must be refused
        r = await g.sign_vote(vote(PREVOTE, 3, 0, B), SoftSigner())
        assert r.outcome == "refused" and r.error_code == Code.DOUBLE_SIGN
        assert g.state.hrs == (3, 0, 1)
    finally:
        release.set()
        g.close()


async def test_invalid_vote_type_is_refused(guard: ChainGuard) -> None:
    r = await guard.sign_vote(vote(7, 3, 0, A), SoftSigner())
    assert (r.outcome, r.error_code) == ("refused", Code.INVALID)


async def test_max_height_is_enforced(state_path: Path) -> None:
    g = ChainGuard(CHAIN, StateStore(state_path), max_height=10)
    try:
        assert (await g.sign_vote(vote(PREVOTE, 10, 0, A), SoftSigner())).outcome == "signed"
        r = await g.sign_vote(vote(PREVOTE, 11, 0, A), SoftSigner())
        assert (r.outcome, r.error_code) == ("refused", Code.MAX_HEIGHT)
    finally:
        g.close()


def test_guard_will_not_start_without_a_state_file(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="does not exist"):
        ChainGuard(CHAIN, StateStore(tmp_path / "missing.json"))


def test_two_guards_cannot_share_a_state_file(guard: ChainGuard, state_path: Path) -> None:
    with pytest.raises(StateFileError, match="in use"):
        ChainGuard(CHAIN, StateStore(state_path))


async def test_open_from_config_loads_state_and_writes_audit_lines(
    state_path: Path, tmp_path: Path
) -> None:
    audit_path = tmp_path / "audit" / "chain.jsonl"
    audit_path.parent.mkdir()
    chain = ChainConfig(
        id=CHAIN,
        key_format=KeyFormat(),
        state_file=state_path,
        max_height=100,
        audit_log=audit_path,
    )
    g = ChainGuard.open(chain)
    try:
        assert g.max_height == 100
        signed = await g.sign_vote(vote(PRECOMMIT, 5, 1, A), SoftSigner(name="hsm-a"))
        await g.sign_vote(vote(PRECOMMIT, 5, 1, A), SoftSigner())
        await g.sign_vote(vote(PRECOMMIT, 5, 1, B), SoftSigner())
    finally:
        g.close()
    entries = list(read_audit(audit_path))
    assert [e.outcome for e in entries] == ["signed", "reused", "refused"]
    first = entries[0]
    assert (first.chain, first.height, first.round, first.step, first.replica) == (
        CHAIN,
        5,
        1,
        2,
        "hsm-a",
    )
    assert first.sign_bytes_sha256 == hashlib.sha256(signed.sign_bytes).hexdigest()
    assert first.block_id["hash"] == "AA" * 32
    assert entries[2].reason is not None and "double signing" in entries[2].reason


async def test_broken_audit_log_does_not_block_signing(state_path: Path, tmp_path: Path) -> None:
    (tmp_path / "gone").mkdir()
    chain = ChainConfig(
        id=CHAIN,
        key_format=KeyFormat(),
        state_file=state_path,
        audit_log=tmp_path / "gone" / "a.jsonl",
    )
    g = ChainGuard.open(chain)  # writable at start-up (a missing directory is refused)...
    shutil.rmtree(tmp_path / "gone")  # ...and broken at run time
    try:
        t0 = time.monotonic()
        r = await g.sign_vote(vote(PREVOTE, 5, 0, A), SoftSigner())
        assert r.outcome == "signed" and time.monotonic() - t0 < 2
    finally:
        g.close()


async def test_audit_line_is_written_only_after_the_state_is_persisted(state_path: Path) -> None:
    seen: list[tuple[int, int, int]] = []

    def append(path: str, text: str) -> None:
        # every line describes a signature the state file already holds
        on_disk = StateStore(state_path).load()
        for line in text.splitlines():
            e = AuditEntry.from_line(line)
            assert on_disk.hrs >= (e.height, e.round, e.step)
            seen.append((e.height, e.round, e.step))

    audit = AuditLog(state_path.parent / "audit.jsonl", append=append)
    g = ChainGuard(CHAIN, StateStore(state_path), audit=audit)
    try:
        for h in range(1, 20):
            await g.sign_vote(vote(PREVOTE, h, 0, A), SoftSigner())
            await g.sign_vote(vote(PRECOMMIT, h, 0, A), SoftSigner())
    finally:
        g.close()
    assert len(seen) == 38 and not audit.failing
