"""Durable file primitives: the one home of every atomic write in `kms`.

Owns: the file-system calls that durable writers make (`FileOps`, which tests
subclass to inject ENOSPC, EROFS, stalls and fsync failures), writing a whole
buffer, fsyncing a directory, and `atomic_write`, which every writer of a whole
file uses (state files, key and identity files, the metrics textfile). Never
knows what the bytes mean and never turns an OSError into a domain error: the
caller does, naming its file.

Rules of `atomic_write`:
- The temporary file gets an unpredictable name in the target's directory and is
  created with O_CREAT | O_EXCL | O_NOFOLLOW: a file or symlink someone planted
  at that name makes the open fail instead of being followed or truncated, so a
  writer of the directory cannot make us overwrite another file.
- Data is written, fsynced, then renamed over the target (or hard-linked to it
  when overwriting is not allowed, so an existing target is never replaced), and
  the directory is fsynced: when it returns, the new content is durable.
- On any failure the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from kms.errors import FileStepError

# O_NOFOLLOW exists on every platform kms runs on (Linux, macOS); O_CLOEXEC too.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_ATTEMPTS = 16


class FileOps:
    """The file-system calls durable writers make; subclass to inject faults in tests."""

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def link(self, src: str, dst: str) -> None:
        os.link(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def read(self, path: str, limit: int) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            return f.read(limit)


DEFAULT_OPS = FileOps()


def write_all(fd: int, data: bytes, ops: FileOps = DEFAULT_OPS) -> None:
    """Write every byte of `data` (a write may write less than asked)."""
    view = memoryview(data)
    while view:
        n = ops.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def fsync_dir(directory: Path, ops: FileOps = DEFAULT_OPS) -> None:
    """fsync a directory so that a create or rename in it is durable; raises OSError."""
    dfd = ops.open(str(directory) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ops.fsync(dfd)
    finally:
        with contextlib.suppress(OSError):
            ops.close(dfd)


def temp_name(path: Path, token: Callable[[], str] = lambda: secrets.token_hex(8)) -> Path:
    """A hidden, unpredictable sibling of `path` (collectors and globs ignore it)."""
    return path.with_name(f".{path.name}.{token()}.tmp")


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    overwrite: bool = True,
    ops: FileOps = DEFAULT_OPS,
    token: Callable[[], str] = lambda: secrets.token_hex(8),
) -> None:
    """Durably replace (or, with overwrite=False, create) `path` with `data`.

    Raises FileStepError (an OSError naming the failed step); FileExistsError when
    `overwrite` is False and `path` exists. See the module docstring.
    """
    path = Path(path)
    tmp, fd = _create_temp(path, mode, ops, token)
    step = "write"
    try:
        try:
            write_all(fd, data, ops)
            step = "fsync"
            ops.fsync(fd)
        finally:
            with contextlib.suppress(OSError):
                ops.close(fd)
        if overwrite:
            step = "rename"
            ops.replace(str(tmp), str(path))
        else:
            step = "link"
            ops.link(str(tmp), str(path))
            with contextlib.suppress(OSError):
                ops.unlink(str(tmp))
    except FileExistsError:
        with contextlib.suppress(OSError):
            ops.unlink(str(tmp))
        raise
    except OSError as e:
        with contextlib.suppress(OSError):
            ops.unlink(str(tmp))
        raise FileStepError(step, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            ops.unlink(str(tmp))
        raise
    try:
        fsync_dir(path.parent, ops)
    except OSError as e:
        raise FileStepError("directory fsync", e) from None


def _create_temp(path: Path, mode: int, ops: FileOps, token: Callable[[], str]) -> tuple[Path, int]:
    last: OSError | None = None
    for _ in range(_TEMP_ATTEMPTS):
        tmp = temp_name(path, token)
        try:
            return tmp, ops.open(str(tmp), _CREATE_FLAGS, mode)
        except FileExistsError as e:  # planted file or symlink (O_EXCL refuses both)
            last = e
        except OSError as e:
            raise FileStepError("create", e) from None
    assert last is not None
    raise FileStepError("create", last)
