"""ChainGuard start-up and shutdown rules (DESIGN.md §5, "Rules that hold whatever the format").

Each test here reproduces a defect of the first release (issue 11) and fails on it:
- the lock was released before a still-running state write finished;
- a stored signature was re-sent after a restart without making the loaded state durable;
- a state file reached through a symlink, a symlinked directory or a hard link got a
  second lock;
- a watermark whose stored sign bytes name another chain was accepted.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from kms.errors import StateFileError, StatePersistError
from kms.state import format2
from kms.state.format1 import encode_state
from kms.state.guard import ChainGuard
from kms.state.machine import SignCandidate, SignState, advance
from kms.state.store import FileOps, StateStore
from tests.unit.state.helpers import CHAIN, PREVOTE, SEED, SoftSigner, block, vote

A, B = block(0xAA), block(0xBB)


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "chain.json"
    StateStore.create(path, SignState.initial())
    return path


class StalledWrite(FileOps):
    """The next state write blocks until released (a stalled disk)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self.entered.set()
        self.release.wait(10)
        return super().pwrite(fd, data, offset)


async def test_the_lock_outlives_a_stalled_write_that_shutdown_interrupted(
    state_path: Path,
) -> None:
    ops = StalledWrite()
    g = ChainGuard(CHAIN, StateStore(state_path, ops=ops))
    task = asyncio.create_task(g.sign_vote(vote(PREVOTE, 5, 0, A), SoftSigner()))
    assert await asyncio.to_thread(ops.entered.wait, 5)
    task.cancel()  # what shutdown does to a link after the grace period
    with pytest.raises(asyncio.CancelledError):
        await task
    closer = threading.Thread(target=g.close)
    closer.start()
    try:
        time.sleep(0.3)
        assert closer.is_alive(), "close() returned while a state write was still running"
        # a second kms (or `kms state set`) cannot take the state file meanwhile
        with pytest.raises(StateFileError, match="in use by another process"):
            StateStore(state_path).lock()
    finally:
        ops.release.set()
        closer.join(10)
    assert not closer.is_alive()
    with StateStore(state_path).lock():  # free once the write is done
        assert StateStore(state_path).load().hrs == (5, 0, 1)  # it landed under the lock


class SyncRecorder(FileOps):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def fsync(self, fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        self.calls.append(f"fsync {'dir' if os.path.isdir(target) else 'file'}")
        super().fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self.calls.append("fdatasync")
        super().fdatasync(fd)


async def test_start_up_makes_the_loaded_state_durable_before_reusing_a_signature(
    state_path: Path,
) -> None:
    # A previous process signed at 5/0/prevote and may have died before its sync.
    first = ChainGuard(CHAIN, StateStore(state_path))
    signed = await first.sign_vote(vote(PREVOTE, 5, 0, A), SoftSigner())
    first.close()

    ops = SyncRecorder()
    g = ChainGuard(CHAIN, StateStore(state_path, ops=ops))
    try:
        assert ops.calls == ["fsync file", "fsync dir"]  # before any request is served
        again = await g.sign_vote(vote(PREVOTE, 5, 0, A), SoftSigner())
        assert (again.outcome, again.signature) == ("reused", signed.signature)
    finally:
        g.close()


def test_a_state_that_cannot_be_made_durable_is_not_served(state_path: Path) -> None:
    class BrokenSync(FileOps):
        def fsync(self, fd: int) -> None:
            raise OSError(5, "Input/output error")

    with pytest.raises(StatePersistError, match="cannot make what was loaded durable"):
        ChainGuard(CHAIN, StateStore(state_path, ops=BrokenSync()))
    with StateStore(state_path).lock():  # the failed start released its lock
        pass


def test_a_symlink_to_the_state_file_is_refused(state_path: Path) -> None:
    link = state_path.parent / "alias.json"
    link.symlink_to(state_path)
    g = ChainGuard(CHAIN, StateStore(state_path))
    try:
        with pytest.raises(StateFileError, match="is a symlink"):
            ChainGuard(CHAIN, StateStore(link))
    finally:
        g.close()
    with pytest.raises(StateFileError, match="is a symlink"):  # not even first
        ChainGuard(CHAIN, StateStore(link))


def test_a_hard_linked_state_file_is_refused_under_both_names(state_path: Path) -> None:
    other = state_path.parent / "other.json"
    os.link(state_path, other)
    for name in (state_path, other):
        with pytest.raises(StateFileError, match="2 hard links"):
            ChainGuard(CHAIN, StateStore(name))


def test_one_lock_for_a_state_file_reached_through_a_symlinked_directory(
    state_path: Path, tmp_path: Path
) -> None:
    alias_dir = tmp_path / "alias"
    alias_dir.symlink_to(state_path.parent, target_is_directory=True)
    g = ChainGuard(CHAIN, StateStore(alias_dir / state_path.name))
    try:
        with pytest.raises(StateFileError, match="in use by another process"):
            ChainGuard(CHAIN, StateStore(state_path))
    finally:
        g.close()


def _signed_state(chain: str) -> SignState:
    cand = SignCandidate.for_vote(chain, vote(PREVOTE, 9, 0, A))
    return advance(cand, SigningKey(SEED).sign(cand.sign_bytes).signature, datetime.now(UTC))


def test_a_watermark_of_another_chain_is_refused_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "chain.json"
    StateStore.create(path, _signed_state("other-chain-7"))
    with pytest.raises(StateFileError) as e:
        ChainGuard(CHAIN, StateStore(path))
    assert "'other-chain-7'" in str(e.value) and repr(CHAIN) in str(e.value)


async def test_a_format1_file_is_converted_once_durably_and_keeps_its_watermark(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chain.json"
    state = _signed_state(CHAIN)
    path.write_bytes(encode_state(state))  # what the first release (and tmkms) wrote
    assert json.loads(path.read_text())["height"] == "9"
    g = ChainGuard(CHAIN, StateStore(path))
    try:
        assert path.stat().st_size == format2.FILE_SIZE
        assert StateStore(path).load() == state
        r = await g.sign_vote(vote(PREVOTE, 9, 0, B), SoftSigner())
        assert r.outcome == "refused"  # the converted watermark holds
    finally:
        g.close()
