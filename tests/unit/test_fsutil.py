"""kms.fsutil.atomic_write: the one durable whole-file writer (issue 11, item 4)."""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from kms.errors import FileStepError
from kms.fsutil import FileOps, atomic_write


def _tokens(*names: str) -> Callable[[], str]:
    it = itertools.chain(names, (f"t{i}" for i in itertools.count()))
    return lambda: next(it)


def test_replaces_content_durably_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_planted_symlink_at_the_temporary_name_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / ".f.guess.tmp").symlink_to(victim)
    atomic_write(tmp_path / "f", b"data", token=_tokens("guess"))
    assert victim.read_bytes() == b"precious"
    assert (tmp_path / "f").read_bytes() == b"data"
    assert (tmp_path / ".f.guess.tmp").is_symlink()  # not ours: left alone


def test_a_planted_regular_file_at_the_temporary_name_is_not_truncated(tmp_path: Path) -> None:
    planted = tmp_path / ".f.guess.tmp"
    planted.write_bytes(b"someone else's")
    atomic_write(tmp_path / "f", b"data", token=_tokens("guess"))
    assert planted.read_bytes() == b"someone else's"


def test_every_name_taken_fails_without_writing_anything(tmp_path: Path) -> None:
    for i in range(16):
        (tmp_path / f".f.n{i}.tmp").write_bytes(b"x")
    with pytest.raises(FileStepError) as info:
        atomic_write(
            tmp_path / "f",
            b"data",
            token=_tokens(*(f"n{i}" for i in range(16))),
        )
    assert info.value.step == "create"
    assert not (tmp_path / "f").exists()


def test_overwrite_false_never_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "key"
    target.write_bytes(b"old key")
    with pytest.raises(FileExistsError):
        atomic_write(target, b"new key", overwrite=False)
    assert target.read_bytes() == b"old key"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


class _FailingFsync(FileOps):
    def fsync(self, fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")


def test_a_failed_fsync_keeps_the_old_content_and_removes_the_temporary_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(FileStepError) as info:
        atomic_write(target, b"new", ops=_FailingFsync())
    assert info.value.step == "fsync"
    assert "fsync failed" in str(info.value)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_temporary_files_are_created_exclusively_without_following_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags_seen: list[int] = []
    real_open = os.open

    def spy(path: str, flags: int, mode: int = 0o777) -> int:
        flags_seen.append(flags)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", spy)
    atomic_write(tmp_path / "f", b"x")
    first = flags_seen[0]
    assert first & os.O_EXCL and first & os.O_NOFOLLOW and first & os.O_CREAT
    assert not first & os.O_TRUNC
