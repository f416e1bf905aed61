"""Disk faults under the guard: no signature escapes, the error is clear, signing resumes."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms.errors import StateFileError, StatePersistError
from kms.privval import canonical
from kms.refusal import Code
from kms.state.guard import ChainGuard
from kms.state.machine import SignState
from kms.state.store import FileOps, StateStore
from tests.unit.state.helpers import CHAIN, PREVOTE, SoftSigner, block, vote

A, B = block(0xAA), block(0xBB)


class Switchable(FileOps):
    """Real file operations, with one fault that can be switched on and off."""

    def __init__(self) -> None:
        self.fault: str | None = None

    def _raise(self, err: int) -> None:
        raise OSError(err, os.strerror(err))

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        if self.fault == "erofs":
            self._raise(errno.EROFS)
        if self.fault == "enospc":
            super().pwrite(fd, data[:7], offset)  # a partial write, then the disk is full
            self._raise(errno.ENOSPC)
        if self.fault == "torn":
            return super().pwrite(fd, data[: len(data) // 2], offset)  # a short write
        return super().pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        if self.fault == "fdatasync":
            self._raise(errno.EIO)
        super().fdatasync(fd)

    def read(self, path: str, limit: int) -> bytes:
        if self.fault == "read":
            self._raise(errno.EIO)
        return super().read(path, limit)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[ChainGuard, Switchable, Path]]:
    path = tmp_path / "chain.json"
    StateStore.create(path, SignState.initial())
    ops = Switchable()
    guard = ChainGuard(CHAIN, StateStore(path, ops=ops))
    yield guard, ops, path
    guard.close()


# fault -> words the error must contain
FAULTS = {
    "erofs": "EROFS",
    "enospc": "ENOSPC",
    "torn": "short write",
    "fdatasync": "EIO",
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_disk_fault_releases_no_signature_and_signing_resumes_after_it(
    setup: tuple[ChainGuard, Switchable, Path], fault: str
) -> None:
    guard, ops, path = setup
    signer = SoftSigner()
    assert (await guard.sign_vote(vote(PREVOTE, 3, 0, A), signer)).outcome == "signed"
    before = guard.state

    ops.fault = fault
    for _ in range(2):  # stays failed while the fault lasts
        with pytest.raises(StatePersistError) as e:
            await guard.sign_vote(vote(PREVOTE, 4, 0, A), signer)
        assert str(path) in str(e.value) and FAULTS[fault] in str(e.value)
        assert guard.state == before  # not advanced in memory
    assert sorted(p.name for p in path.parent.iterdir()) == [".chain.json.lock", "chain.json"]

    ops.fault = None
    r = await guard.sign_vote(vote(PREVOTE, 4, 0, A), signer)
    assert r.outcome in ("signed", "reused")
    signer.verify_key.verify(r.sign_bytes, r.signature)
    assert r.sign_bytes == canonical.vote_sign_bytes(CHAIN, vote(PREVOTE, 4, 0, A))
    assert StateStore(path).load().hrs == (4, 0, 1)


async def test_write_that_reached_the_page_cache_before_a_failed_sync_still_counts(
    setup: tuple[ChainGuard, Switchable, Path],
) -> None:
    guard, ops, _ = setup
    ops.fault = "fdatasync"
    with pytest.raises(StatePersistError):
        await guard.sign_vote(vote(PREVOTE, 4, 0, A), SoftSigner())
    ops.fault = None
    # the file (as read back) holds block A: block B at the same HRS is a double sign
    r = await guard.sign_vote(vote(PREVOTE, 4, 0, B), SoftSigner())
    assert (r.outcome, r.error_code) == ("refused", Code.DOUBLE_SIGN)


async def test_unreadable_state_after_a_fault_fails_closed_until_it_reads_back(
    setup: tuple[ChainGuard, Switchable, Path],
) -> None:
    guard, ops, _ = setup
    ops.fault = "erofs"
    with pytest.raises(StatePersistError):
        await guard.sign_vote(vote(PREVOTE, 4, 0, A), SoftSigner())
    ops.fault = "read"
    signer = SoftSigner()
    with pytest.raises(StateFileError, match="EIO"):
        await guard.sign_vote(vote(PREVOTE, 4, 0, A), signer)
    assert signer.calls == 0  # nothing was even signed
    ops.fault = None
    assert (await guard.sign_vote(vote(PREVOTE, 4, 0, A), signer)).outcome == "signed"


async def test_state_file_that_went_backwards_stops_the_chain(
    setup: tuple[ChainGuard, Switchable, Path],
) -> None:
    guard, ops, path = setup
    await guard.sign_vote(vote(PREVOTE, 9, 0, A), SoftSigner())
    ops.fault = "erofs"
    with pytest.raises(StatePersistError):
        await guard.sign_vote(vote(PREVOTE, 10, 0, A), SoftSigner())
    ops.fault = None
    StateStore(path).save(SignState(2, 0, 0))  # someone restored an old copy meanwhile
    with pytest.raises(StateFileError, match="went backwards"):
        await guard.sign_vote(vote(PREVOTE, 10, 0, A), SoftSigner())
    with pytest.raises(StateFileError, match="went backwards"):
        await guard.sign_vote(vote(PREVOTE, 3, 0, A), SoftSigner())


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_real_read_only_directory(tmp_path: Path) -> None:
    path = tmp_path / "ro" / "chain.json"
    StateStore.create(path, SignState.initial())
    guard = ChainGuard(CHAIN, StateStore(path))
    try:
        os.chmod(path, 0o400)
        guard.store.close()  # the next write reopens the file
        with pytest.raises(StatePersistError, match="EACCES"):
            await guard.sign_vote(vote(PREVOTE, 4, 0, A), SoftSigner())
        os.chmod(path, 0o600)
        assert (await guard.sign_vote(vote(PREVOTE, 4, 0, A), SoftSigner())).outcome == "signed"
    finally:
        os.chmod(path, 0o600)
        guard.close()
