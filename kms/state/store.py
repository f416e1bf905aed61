"""The durable double-sign state of one chain: its state file, on disk.

Owns: opening, loading, saving, creating, converting and locking a state file.
The byte layouts live in `kms.state.format2` (what `kms start` writes) and
`kms.state.format1` (the JSON tmkms reads; still loaded, and converted once).
Never decides anything (that is `kms.state.machine`) and never signs.

Rules (DESIGN.md §5):
- `load()` is strict: a missing, empty, truncated, corrupt or wrongly typed file
  is a StateFileError naming the file and what is wrong. It never resets.
- `save()` writes the format-2 slot not holding the current state in place
  (`pwrite`) and `fdatasync`s before it returns. A failure is a
  StatePersistError; the other slot still holds the previous state, and the
  store forgets what it knew, so the next save reads the file again.
- `make_durable()` fsyncs the file and its directory: whatever was loaded may
  exist only in the page cache (a previous process died before its sync), and
  nothing may be signed or re-sent on top of it until it is on disk.
- `create()` is the only way a state file comes into existence (whole file
  written, fsynced, linked into place, directory fsynced); it refuses to
  overwrite one. `convert()` replaces a format-1 file by the same state in
  format 2, atomically and durably.
- `lock()` is taken on the state file's real path: a state file that is a
  symlink or has more than one hard link is refused, so two names for one file
  can never get two locks. Files are opened with O_NOFOLLOW.
- All file-system calls go through a `FileOps` object (`kms.fsutil`) so tests
  can inject ENOSPC, EROFS, stalls and fsync failures.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

from kms.errors import BadState, FileStepError, StateFileError, StatePersistError
from kms.fsutil import DEFAULT_OPS, FileOps, atomic_write, fsync_dir
from kms.state import format2
from kms.state.format1 import decode_state
from kms.state.machine import SignState

__all__ = ["FileOps", "StateLock", "StateStore"]

MAX_STATE_FILE_SIZE = 64 * 1024
_OPEN_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


class StateStore:
    """One chain's state file. Every method is synchronous (run them off the event loop)."""

    def __init__(self, path: str | os.PathLike[str], *, ops: FileOps | None = None) -> None:
        self.path = Path(path)
        self.ops = ops or DEFAULT_OPS
        self.format: int | None = None  # of the file as last loaded or written
        self._current: format2.Current | None = None
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"StateStore({str(self.path)!r})"

    # reading

    def load(self) -> SignState:
        """Read and strictly validate the state file; StateFileError if it is not usable."""
        self._forget()
        self._refuse_links()
        try:
            data = self.ops.read(str(self.path), MAX_STATE_FILE_SIZE + 1)
        except FileNotFoundError:
            raise StateFileError(
                f"state file {self.path} does not exist; create it on purpose with "
                "`kms init`, `kms state import` or `kms state set`"
            ) from None
        except OSError as e:
            raise StateFileError(f"state file {self.path}: cannot read: {_oserr(e)}") from None
        if len(data) > MAX_STATE_FILE_SIZE:
            raise StateFileError(
                f"state file {self.path} is larger than {MAX_STATE_FILE_SIZE} bytes (corrupt?)"
            )
        try:
            if format2.is_format2(data):
                current = format2.decode_file(data)
                self.format, self._current = 2, current
                return current.state
            state = decode_state(data)
        except BadState as e:
            raise StateFileError(f"state file {self.path} {_as_clause(str(e))}") from None
        self.format = 1
        return state

    # writing

    def save(self, state: SignState) -> None:
        """Make `state` the current state, durably (in place, format 2); see the rules."""
        if self._current is None:
            self.load()  # which slot is current? (and is it format 2 at all?)
        if self._current is None:  # format 1: the conversion writes `state` itself
            self.replace(state)
            return
        try:
            slot = format2.encode_slot(state, self._current.sequence + 1)
        except BadState as e:
            raise StatePersistError(f"state file {self.path}: {e}") from None
        fd = self._open()
        target = self._current.next_slot
        try:
            n = self.ops.pwrite(fd, slot, format2.slot_offset(target))
            if n != len(slot):
                raise OSError(errno.EIO, f"short write ({n} of {len(slot)} bytes)")
            self.ops.fdatasync(fd)
        except OSError as e:
            self._forget()
            raise StatePersistError(
                f"state file {self.path}: write of slot {target} failed: {_oserr(e)}"
            ) from None
        self._current = format2.Current(state, self._current.sequence + 1, target)

    def make_durable(self) -> None:
        """fsync the state file and its directory (start-up rule; see the module docstring)."""
        try:
            fd = self.ops.open(str(self.path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                self.ops.fsync(fd)
            finally:
                with contextlib.suppress(OSError):
                    self.ops.close(fd)
            fsync_dir(self.path.parent, self.ops)
        except OSError as e:
            raise StatePersistError(
                f"state file {self.path}: cannot make what was loaded durable: {_oserr(e)}"
            ) from None

    def convert(self) -> bool:
        """Rewrite a format-1 file as format 2 (same state); False if it already is format 2."""
        state = self.load()
        if self.format == 2:
            return False
        self.replace(state)
        return True

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], state: SignState, *, ops: FileOps | None = None
    ) -> StateStore:
        """Create a new state file holding `state`; refuses to overwrite an existing one.

        Creates the parent directory with mode 0700 if it does not exist.
        """
        store = cls(path, ops=ops)
        parent = store.path.parent
        if not parent.exists():
            try:
                parent.mkdir(mode=0o700, parents=True)
                os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
                fsync_dir(parent.parent, store.ops)
            except OSError as e:
                raise StateFileError(
                    f"state file {store.path}: cannot create directory {parent}: {_oserr(e)}"
                ) from None
        try:
            atomic_write(store.path, format2.new_file(state), overwrite=False, ops=store.ops)
        except FileExistsError:
            raise StateFileError(
                f"state file {store.path} already exists; refusing to overwrite it"
            ) from None
        except OSError as e:
            raise StatePersistError(
                f"state file {store.path}: cannot create: {_oserr(e)}"
            ) from None
        store.format = 2
        store._current = format2.Current(state, 1, 0)
        return store

    def close(self) -> None:
        """Close the file descriptor kept for in-place writes."""
        self._forget()

    def lock(self) -> StateLock:
        """Take the exclusive lock that says "this process writes this state file".

        An advisory flock on `.<name>.lock` next to the state file's real path: a
        second kms process (or `kms state set/import` while kms runs) gets a
        StateFileError instead of silently racing. The kernel drops it when the
        process dies.
        """
        self._refuse_links()
        real = Path(os.path.realpath(self.path.parent)) / self.path.name
        lock_path = real.parent / f".{real.name}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StateFileError(
                f"state file {self.path}: cannot open lock file {lock_path}: {_oserr(e)}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateFileError(
                    f"state file {self.path} is in use by another process "
                    "(is kms running for this chain?)"
                ) from None
            raise StateFileError(f"state file {self.path}: cannot lock: {_oserr(e)}") from None
        return StateLock(fd)

    # internals

    def _refuse_links(self) -> None:
        """Refuse a state file reachable under another name (see the module docstring)."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return  # nothing to lock yet (create) or to load (load says so)
        except OSError as e:
            raise StateFileError(f"state file {self.path}: cannot stat: {_oserr(e)}") from None
        if stat.S_ISLNK(st.st_mode):
            raise StateFileError(
                f"state file {self.path} is a symlink; configure the real path "
                f"({os.path.realpath(self.path)}): one state file must have one name, "
                "or two processes could lock it under two names"
            )
        if not stat.S_ISREG(st.st_mode):
            raise StateFileError(f"state file {self.path} is not a regular file")
        if st.st_nlink > 1:
            raise StateFileError(
                f"state file {self.path} has {st.st_nlink} hard links; remove the other "
                "names: one state file must have one name, or two processes could lock "
                "it under two names"
            )

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        try:
            fd = self.ops.open(str(self.path), _OPEN_FLAGS)
        except OSError as e:
            raise StatePersistError(f"state file {self.path}: cannot open: {_oserr(e)}") from None
        try:
            st = self.ops.fstat(fd)
        except OSError as e:
            self.ops.close(fd)
            raise StatePersistError(f"state file {self.path}: cannot stat: {_oserr(e)}") from None
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size != format2.FILE_SIZE:
            self.ops.close(fd)
            raise StateFileError(
                f"state file {self.path} changed underneath kms (size {st.st_size}, "
                f"{st.st_nlink} links); not writing to it"
            )
        self._fd = fd
        return fd

    def replace(self, state: SignState) -> None:
        """Replace the whole file by a fresh format-2 file holding `state` (atomic, durable).

        For a format-1 file and for `kms state set --force` on an unreadable one;
        the caller holds the lock.
        """
        self._forget()
        try:
            data = format2.new_file(state)
            atomic_write(self.path, data, ops=self.ops)
        except BadState as e:
            raise StatePersistError(f"state file {self.path}: {e}") from None
        except OSError as e:
            raise StatePersistError(f"state file {self.path}: {_oserr(e)}") from None
        self.format, self._current = 2, format2.Current(state, 1, 0)

    def _forget(self) -> None:
        self._current = None
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                self.ops.close(fd)


class StateLock:
    """A held state-file lock; `release()` (or process exit) frees it."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _oserr(e: OSError) -> str:
    if isinstance(e, FileStepError):
        return f"{e.step}: {_oserr(OSError(e.errno, e.strerror))}"
    name = errno.errorcode.get(e.errno or 0, "")
    text = e.strerror or str(e)
    return f"{text} ({name})" if name else text


def _as_clause(text: str) -> str:
    """'is empty' stays; "'height' must ..." becomes ": 'height' must ..."."""
    return text if text.startswith(("is ", "has ", "must ", "looks ")) else f": {text}"
