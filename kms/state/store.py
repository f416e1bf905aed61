"""The durable double-sign state: one JSON file per chain, written atomically.

Owns: the state file format (encode, strict decode, the lenient readers used by
`kms state import`), loading, saving and explicit creation. Never decides
anything (that is `kms.state.machine`) and never signs.

File format (tmkms can read it; DESIGN.md §5)::

    {"height": "123", "round": "0", "step": 1,
     "block_id": {"hash": "<HEX>", "parts": {"total": 1, "hash": "<HEX>"}},
     "sign_bytes": "<hex>", "signature": "<base64>", "updated_at": "<RFC 3339>"}

`height`/`round` are decimal strings and `step` a number (0 proposal, 1 prevote,
2 precommit), `block_id` is written the way tendermint-rs serialises
`consensus::State` (upper-case hex, `parts`, nil as empty hashes and total 0);
`sign_bytes`, `signature` and `updated_at` are ours and are omitted when empty.
Reading accepts what tmkms writes or once wrote: `parts` or `part_set_header`,
`total` as a number or a string, `block_id` null.

Rules:
- `load()` is strict: a missing, empty, truncated, corrupt or wrongly typed file
  is a StateFileError naming the file and what is wrong. It never resets.
- `save()` writes a temporary file in the same directory (mode 0600), fsyncs it,
  renames it over the state file and fsyncs the directory. Any failure is a
  StatePersistError; the old file is then still in place.
- `create()` is the only way a state file comes into existence, and it refuses
  to overwrite one.
- All file-system calls go through a `FileOps` object so tests can inject
  ENOSPC, EROFS, rename and fsync failures.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import itertools
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kms.errors import CodecError, StateFileError, StatePersistError
from kms.privval import canonical
from kms.privval.messages import NIL_BLOCK_ID, BlockID, PartSetHeader, SignedMsgType
from kms.state.machine import MAX_HEIGHT, MAX_ROUND, SignState, Step

_STEPS = frozenset(int(s) for s in Step)

MAX_STATE_FILE_SIZE = 64 * 1024
HASH_SIZE = 32
SIGNATURE_SIZE = 64
_OUR_KEYS = frozenset(
    {"height", "round", "step", "block_id", "sign_bytes", "signature", "updated_at"}
)
_PARTS_SPELLINGS = ("parts", "part_set_header", "partSetHeader", "PartSetHeader")


class FileOps:
    """The file-system calls the store makes; subclass to inject faults in tests."""

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def link(self, src: str, dst: str) -> None:
        os.link(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def read(self, path: str, limit: int) -> bytes:
        with open(path, "rb") as f:
            return f.read(limit)


# --- encoding ------------------------------------------------------------------


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a 'Z'."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_block_id(block_id: BlockID) -> dict[str, Any]:
    return {
        "hash": block_id.hash.hex().upper(),
        "parts": {
            "total": block_id.part_set_header.total,
            "hash": block_id.part_set_header.hash.hex().upper(),
        },
    }


def encode_state(state: SignState) -> bytes:
    obj: dict[str, Any] = {
        "height": str(state.height),
        "round": str(state.round),
        "step": state.step,
        "block_id": encode_block_id(state.block_id),
    }
    if state.sign_bytes:
        obj["sign_bytes"] = state.sign_bytes.hex()
    if state.signature:
        obj["signature"] = base64.b64encode(state.signature).decode("ascii")
    if state.updated_at is not None:
        obj["updated_at"] = format_time(state.updated_at)
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


# --- decoding --------------------------------------------------------------------


class _Bad(ValueError):
    """A shape error inside the decoder; turned into StateFileError with the file name."""


def _decimal(value: Any, key: str, limit: int, *, allow_number: bool) -> int:
    if isinstance(value, bool):
        raise _Bad(f"'{key}' must be a decimal string, got {json.dumps(value)}")
    if isinstance(value, int) and allow_number:
        n = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        n = int(value)
    else:
        raise _Bad(f"'{key}' must be a non-negative decimal string, got {json.dumps(value)}")
    if not 0 <= n <= limit:
        raise _Bad(f"'{key}' is out of range (0..{limit}): {n}")
    return n


def _hex(value: Any, key: str, sizes: tuple[int, ...]) -> bytes:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _Bad(f"'{key}' must be a hex string, got {json.dumps(value)}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise _Bad(f"'{key}' is not valid hex: {value!r}") from None
    if sizes and len(raw) not in sizes:
        raise _Bad(f"'{key}' must be {' or '.join(map(str, sizes))} bytes, got {len(raw)}")
    return raw


def decode_block_id(value: Any, key: str = "block_id") -> BlockID:
    """tmkms's block ID JSON (or null) -> BlockID; rejects odd shapes and sizes."""
    if value is None:
        return NIL_BLOCK_ID
    if not isinstance(value, dict):
        raise _Bad(f"'{key}' must be an object or null, got {json.dumps(value)}")
    spellings = [k for k in _PARTS_SPELLINGS if k in value]
    unknown = set(value) - {"hash", *_PARTS_SPELLINGS}
    if unknown or len(spellings) > 1:
        raise _Bad(f"'{key}' has unexpected keys: {sorted(unknown | set(spellings[1:]))}")
    block_hash = _hex(value.get("hash", ""), f"{key}.hash", (0, HASH_SIZE))
    psh: Any = value[spellings[0]] if spellings else None
    if psh is None:
        psh = {}
    if not isinstance(psh, dict) or set(psh) - {"total", "hash"}:
        raise _Bad(f"'{key}.parts' must be an object with 'total' and 'hash'")
    total = _decimal(psh.get("total", 0), f"{key}.parts.total", 2**32 - 1, allow_number=True)
    parts_hash = _hex(psh.get("hash", ""), f"{key}.parts.hash", (0, HASH_SIZE))
    return BlockID(block_hash, PartSetHeader(total, parts_hash))


def _step(value: Any, key: str = "step") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in _STEPS:
        raise _Bad(f"'{key}' must be 0 (proposal), 1 (prevote) or 2 (precommit), got {value!r}")
    return value


def _signature(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _Bad(f"'signature' must be a base64 string, got {json.dumps(value)}")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"'signature' is not valid base64: {value!r}") from None
    if len(raw) != SIGNATURE_SIZE:
        raise _Bad(f"'signature' must be {SIGNATURE_SIZE} bytes, got {len(raw)}")
    return raw


def _updated_at(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _Bad(f"'updated_at' must be an RFC 3339 string, got {json.dumps(value)}")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f"'updated_at' is not an RFC 3339 time: {value!r}") from None
    if t.tzinfo is None:
        raise _Bad(f"'updated_at' has no time zone: {value!r}")
    return t


def check_sign_bytes(state: SignState) -> None:
    """Raise _Bad unless `sign_bytes` decode to the stored height, round, step and block ID."""
    try:
        if state.step == Step.PROPOSAL:
            p = canonical.decode_canonical_proposal(state.sign_bytes)
            seen = (p.type, p.height, p.round, p.block_id)
            want_type = int(SignedMsgType.PROPOSAL)
        else:
            v = canonical.decode_canonical_vote(state.sign_bytes)
            seen = (v.type, v.height, v.round, v.block_id)
            want_type = int(
                SignedMsgType.PREVOTE if state.step == Step.PREVOTE else SignedMsgType.PRECOMMIT
            )
    except CodecError as e:
        raise _Bad(f"'sign_bytes' do not decode as a canonical message: {e}") from None
    if seen != (want_type, state.height, state.round, state.block_id):
        raise _Bad(
            "'sign_bytes' do not match the stored height/round/step/block_id "
            f"(they encode type {seen[0]}, height {seen[1]}, round {seen[2]})"
        )


def _parse_json(data: bytes) -> Any:
    if not data.strip():
        raise _Bad("is empty")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Bad("is not UTF-8 text (corrupt?)") from None
    except json.JSONDecodeError as e:
        raise _Bad(f"is not valid JSON (truncated or corrupt?): {e}") from None


def decode_state(data: bytes) -> SignState:
    """Strictly decode our format (which includes anything tmkms writes); raises _Bad."""
    obj = _parse_json(data)
    if not isinstance(obj, dict):
        raise _Bad("must contain a JSON object")
    if "signbytes" in obj:
        raise _Bad(
            "looks like a CometBFT priv_validator_state.json (steps 1-3); "
            "convert it with `kms state import`"
        )
    unknown = set(obj) - _OUR_KEYS
    if unknown:
        raise _Bad(f"has unexpected keys: {sorted(unknown)}")
    missing = [k for k in ("height", "round", "step") if k not in obj]
    if missing:
        raise _Bad(f"is missing {', '.join(repr(k) for k in missing)}")
    state = SignState(
        height=_decimal(obj["height"], "height", MAX_HEIGHT, allow_number=False),
        round=_decimal(obj["round"], "round", MAX_ROUND, allow_number=False),
        step=_step(obj["step"]),
        block_id=decode_block_id(obj.get("block_id")),
        sign_bytes=_hex(obj.get("sign_bytes", ""), "sign_bytes", ()),
        signature=_signature(obj["signature"]) if "signature" in obj else b"",
        updated_at=_updated_at(obj["updated_at"]) if "updated_at" in obj else None,
    )
    if bool(state.sign_bytes) != bool(state.signature):
        raise _Bad("has 'sign_bytes' without 'signature' or the other way round")
    if state.sign_bytes:
        check_sign_bytes(state)
    return state


# CometBFT FilePV numbers steps 1 propose, 2 prevote, 3 precommit (0: nothing signed yet).
_COMETBFT_STEP = {0: Step.PROPOSAL, 1: Step.PROPOSAL, 2: Step.PREVOTE, 3: Step.PRECOMMIT}


def decode_foreign_state(data: bytes) -> tuple[SignState, str]:
    """Read a CometBFT priv_validator_state.json, a tmkms state file or ours.

    Returns the state and the name of the format detected. Used by `kms state
    import`; lenient about spellings, strict about values. Raises _Bad.
    """
    obj = _parse_json(data)
    if not isinstance(obj, dict):
        raise _Bad("must contain a JSON object")
    if "signbytes" in obj or ("block_id" not in obj and "round" in obj and "step" in obj):
        unknown = set(obj) - {"height", "round", "step", "signature", "signbytes"}
        if unknown:
            raise _Bad(f"has unexpected keys for a CometBFT state file: {sorted(unknown)}")
        raw_step = obj.get("step")
        if isinstance(raw_step, bool) or raw_step not in _COMETBFT_STEP:
            raise _Bad(f"'step' must be 0..3 in a CometBFT state file, got {raw_step!r}")
        sign_bytes = _hex(obj.get("signbytes", ""), "signbytes", ())
        sig_value = obj.get("signature")
        signature = _signature(sig_value) if sig_value else b""
        state = SignState(
            height=_decimal(obj.get("height"), "height", MAX_HEIGHT, allow_number=True),
            round=_decimal(obj.get("round"), "round", MAX_ROUND, allow_number=True),
            step=_COMETBFT_STEP[raw_step],
        )
        if sign_bytes and signature:
            block_id = _block_id_from_sign_bytes(sign_bytes, state.step)
            state = SignState(
                state.height, state.round, state.step, block_id, sign_bytes, signature
            )
            check_sign_bytes(state)
        return state, "cometbft"
    # tmkms or ours: same reader, numbers tolerated for height/round
    fixed = dict(obj)
    for key in ("height", "round"):
        if isinstance(fixed.get(key), int) and not isinstance(fixed.get(key), bool):
            fixed[key] = str(fixed[key])
    state = decode_state(json.dumps(fixed).encode())
    ours = bool(set(obj) & {"sign_bytes", "signature", "updated_at"})
    return state, "kms" if ours else "tmkms"


def _block_id_from_sign_bytes(sign_bytes: bytes, step: int) -> BlockID:
    try:
        if step == Step.PROPOSAL:
            return canonical.decode_canonical_proposal(sign_bytes).block_id
        return canonical.decode_canonical_vote(sign_bytes).block_id
    except CodecError as e:
        raise _Bad(f"'signbytes' do not decode as a canonical message: {e}") from None


# --- the store -------------------------------------------------------------------------


class StateStore:
    """One chain's state file. `load()` and `save()` are synchronous (run them off the loop)."""

    _counter = itertools.count()

    def __init__(self, path: str | os.PathLike[str], *, ops: FileOps | None = None) -> None:
        self.path = Path(path)
        self.ops = ops or FileOps()

    def __repr__(self) -> str:
        return f"StateStore({str(self.path)!r})"

    # reading

    def load(self) -> SignState:
        """Read and strictly validate the state file; StateFileError if it is not usable."""
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
            return decode_state(data)
        except _Bad as e:
            raise StateFileError(f"state file {self.path} {_as_clause(str(e))}") from None

    # writing

    def save(self, state: SignState) -> None:
        """Atomically replace the state file with `state` (durable when this returns)."""
        tmp = self._write_temp(encode_state(state))
        try:
            self.ops.replace(tmp, str(self.path))
        except OSError as e:
            self._discard(tmp)
            raise StatePersistError(
                f"state file {self.path}: rename of {tmp} failed: {_oserr(e)}"
            ) from None
        self._fsync_dir(self.path.parent)

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
            except OSError as e:
                raise StateFileError(
                    f"state file {store.path}: cannot create directory {parent}: {_oserr(e)}"
                ) from None
            store._fsync_dir(parent.parent)
        tmp = store._write_temp(encode_state(state))
        try:
            store.ops.link(tmp, str(store.path))
        except FileExistsError:
            raise StateFileError(
                f"state file {store.path} already exists; refusing to overwrite it"
            ) from None
        except OSError as e:
            raise StatePersistError(
                f"state file {store.path}: cannot create: {_oserr(e)}"
            ) from None
        finally:
            store._discard(tmp)
        store._fsync_dir(parent)
        return store

    def lock(self) -> StateLock:
        """Take the exclusive lock that says "this process writes this state file".

        An advisory flock on `.<name>.lock` next to the state file: a second kms
        process (or `kms state set/import` while kms runs) gets a StateFileError
        instead of silently racing. The kernel drops it when the process dies.
        """
        lock_path = self.path.parent / f".{self.path.name}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temporary files a killed process left next to the state file."""
        removed = []
        for p in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
        return removed

    # internals

    def _temp_name(self) -> str:
        return str(self.path.parent / f".{self.path.name}.{os.getpid()}-{next(self._counter)}.tmp")

    def _write_temp(self, data: bytes) -> str:
        tmp = self._temp_name()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = self.ops.open(tmp, flags, 0o600)
        except OSError as e:
            raise StatePersistError(
                f"state file {self.path}: cannot create temporary file in "
                f"{self.path.parent}: {_oserr(e)}"
            ) from None
        step = "write"
        try:
            view = memoryview(data)
            while view:
                n = self.ops.write(fd, view.tobytes())
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[n:]
            step = "fsync"
            self.ops.fsync(fd)
        except OSError as e:
            self._close_quietly(fd)
            self._discard(tmp)
            raise StatePersistError(
                f"state file {self.path}: {step} of temporary file failed: {_oserr(e)}"
            ) from None
        try:
            self.ops.close(fd)
        except OSError as e:
            self._discard(tmp)
            raise StatePersistError(
                f"state file {self.path}: close of temporary file failed: {_oserr(e)}"
            ) from None
        return tmp

    def _fsync_dir(self, directory: Path) -> None:
        try:
            fd = self.ops.open(str(directory), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise StatePersistError(
                f"state file {self.path}: cannot open directory {directory} to sync it: {_oserr(e)}"
            ) from None
        try:
            self.ops.fsync(fd)
        except OSError as e:
            raise StatePersistError(
                f"state file {self.path}: fsync of directory {directory} failed: {_oserr(e)}"
            ) from None
        finally:
            self._close_quietly(fd)

    def _close_quietly(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            self.ops.close(fd)

    def _discard(self, tmp: str) -> None:
        with contextlib.suppress(OSError):
            self.ops.unlink(tmp)


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
    name = errno.errorcode.get(e.errno or 0, "")
    text = e.strerror or str(e)
    return f"{text} ({name})" if name else text


def _as_clause(text: str) -> str:
    """'is empty' stays; "'height' must ..." becomes ": 'height' must ..."."""
    return text if text.startswith(("is ", "has ", "must ", "looks ")) else f": {text}"
