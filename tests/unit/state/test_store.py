"""The state file: strict loading of both formats, in-place saving, explicit creation, locking."""

from __future__ import annotations

import base64
import errno
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from kms.errors import StateFileError, StatePersistError
from kms.privval.messages import Proposal, Vote
from kms.state import format2
from kms.state.format1 import decode_foreign_state, encode_state
from kms.state.machine import SignCandidate, SignState, advance
from kms.state.store import FileOps, StateStore
from tests.unit.state.helpers import CHAIN, NIL, PRECOMMIT, PREVOTE, SEED, block, proposal, vote

NOW = datetime(2026, 11, 21, 1, 2, 3, 456789, tzinfo=UTC)
A = block(0xAB)


def signed_state(msg: Vote | Proposal | None = None) -> SignState:
    m = msg or vote(PREVOTE, 1234, 1, A)
    c = (
        SignCandidate.for_vote(CHAIN, m)
        if isinstance(m, Vote)
        else SignCandidate.for_proposal(CHAIN, m)
    )
    return advance(c, SigningKey(SEED).sign(c.sign_bytes).signature, NOW)


def write(path: Path, obj: Any) -> None:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


# --- format ---------------------------------------------------------------------------------


def test_round_trip_preserves_every_field(tmp_path: Path) -> None:
    for state in (
        signed_state(),
        signed_state(vote(PRECOMMIT, 9, 0, NIL)),
        signed_state(proposal(7, 3, A, pol_round=1)),
        SignState(5, 0, 2),
    ):
        path = tmp_path / f"{state.height}.json"
        StateStore.create(path, state)
        assert StateStore(path).load() == state


def test_format1_has_the_shape_tmkms_reads() -> None:
    state = signed_state()
    obj = json.loads(encode_state(state))
    assert obj["height"] == "1234" and obj["round"] == "1" and obj["step"] == 1
    assert obj["block_id"] == {"hash": "AB" * 32, "parts": {"total": 1, "hash": "AB" * 32}}
    assert bytes.fromhex(obj["sign_bytes"]) == state.sign_bytes
    assert base64.b64decode(obj["signature"]) == state.signature
    assert obj["updated_at"] == "2026-11-21T01:02:03.456789Z"


def test_nil_block_id_is_written_as_tendermint_rs_default(tmp_path: Path) -> None:
    obj = json.loads(encode_state(SignState(3, 0, 1)))
    assert obj["block_id"] == {"hash": "", "parts": {"total": 0, "hash": ""}}
    assert "sign_bytes" not in obj and "signature" not in obj


TMKMS_FILES = [
    ({"height": "5", "round": "1", "step": 2, "block_id": None}, NIL),
    (
        {
            "height": "5",
            "round": "1",
            "step": 2,
            "block_id": {"hash": "ab" * 32, "part_set_header": {"total": "1", "hash": "AB" * 32}},
        },
        A,
    ),
    (
        {
            "height": "5",
            "round": "1",
            "step": 2,
            "block_id": {"hash": "AB" * 32, "parts": {"total": 1, "hash": "AB" * 32}},
        },
        A,
    ),
    (
        {
            "height": "5",
            "round": "1",
            "step": 2,
            "block_id": {"hash": "", "parts": {"total": 0, "hash": ""}},
        },
        NIL,
    ),
]


@pytest.mark.parametrize(("obj", "block_id"), TMKMS_FILES, ids=["null", "psh", "parts", "zero"])
def test_loads_files_written_by_tmkms(tmp_path: Path, obj: Any, block_id: Any) -> None:
    path = tmp_path / "tmkms.json"
    write(path, obj)
    assert StateStore(path).load() == SignState(5, 1, 2, block_id)


# --- strict loading ---------------------------------------------------------------------------

GOOD = {"height": "5", "round": "1", "step": 2, "block_id": None}
BAD_FILES = [
    ("empty", "", "is empty"),
    ("whitespace", "  \n", "is empty"),
    ("truncated", json.dumps(GOOD)[:20], "not valid JSON"),
    ("binary", "\udcff", "not"),
    ("array", "[1, 2]", "JSON object"),
    ("height number", {**GOOD, "height": 5}, "'height'"),
    ("negative height", {**GOOD, "height": "-5"}, "'height'"),
    ("height with spaces", {**GOOD, "height": " 5"}, "'height'"),
    ("height too big", {**GOOD, "height": str(2**63)}, "out of range"),
    ("round negative", {**GOOD, "round": "-1"}, "'round'"),
    ("round null", {**GOOD, "round": None}, "'round'"),
    ("step string", {**GOOD, "step": "2"}, "'step'"),
    ("step bool", {**GOOD, "step": True}, "'step'"),
    ("step 3", {**GOOD, "step": 3}, "'step'"),
    ("step -1", {**GOOD, "step": -1}, "'step'"),
    ("missing step", {"height": "5", "round": "1"}, "missing 'step'"),
    ("unknown key", {**GOOD, "heigth": "9"}, "unexpected keys"),
    ("cometbft file", {"height": "5", "round": 1, "step": 2, "signbytes": ""}, "CometBFT"),
    ("block hash short", {**GOOD, "block_id": {"hash": "AB", "parts": None}}, "32 bytes"),
    ("block hash not hex", {**GOOD, "block_id": {"hash": "XY" * 32}}, "not valid hex"),
    ("block id string", {**GOOD, "block_id": "AB"}, "object or null"),
    ("parts total negative", {**GOOD, "block_id": {"parts": {"total": -1}}}, "total"),
    ("both parts spellings", {**GOOD, "block_id": {"parts": {}, "part_set_header": {}}}, "keys"),
    (
        "signature without sign bytes",
        {**GOOD, "signature": base64.b64encode(b"x" * 64).decode()},
        "without",
    ),
    ("signature wrong size", {**GOOD, "signature": "AAAA", "sign_bytes": "00"}, "64 bytes"),
    ("signature not base64", {**GOOD, "signature": "!!", "sign_bytes": "00"}, "base64"),
    ("updated_at garbage", {**GOOD, "updated_at": "yesterday"}, "RFC 3339"),
    ("updated_at no zone", {**GOOD, "updated_at": "2026-01-01T00:00:00"}, "time zone"),
]


@pytest.mark.parametrize(
    ("content", "message"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_unusable_files_are_errors_naming_the_file_and_the_problem(
    tmp_path: Path, content: Any, message: str
) -> None:
    path = tmp_path / "bad.json"
    if content == "\udcff":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        write(path, content)
    before = path.read_bytes()
    with pytest.raises(StateFileError) as e:
        StateStore(path).load()
    assert str(path) in str(e.value)
    assert message in str(e.value)
    assert path.read_bytes() == before  # never reset


def test_sign_bytes_that_contradict_the_watermark_are_rejected(tmp_path: Path) -> None:
    state = signed_state(vote(PREVOTE, 10, 0, A))
    obj = json.loads(encode_state(state))
    for field, value in (("height", "11"), ("round", "1"), ("step", 2), ("block_id", None)):
        path = tmp_path / f"{field}.json"
        write(path, {**obj, field: value})
        with pytest.raises(StateFileError, match="do not match"):
            StateStore(path).load()
    write(tmp_path / "junk.json", {**obj, "sign_bytes": "0badbeef"})
    with pytest.raises(StateFileError, match="do not decode"):
        StateStore(tmp_path / "junk.json").load()


def test_missing_file_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(StateFileError, match="does not exist"):
        StateStore(path).load()
    assert not path.exists()


def test_oversized_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(" " * 70_000 + json.dumps(GOOD))
    with pytest.raises(StateFileError, match="larger than"):
        StateStore(path).load()


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    class Eio(FileOps):
        def read(self, path: str, limit: int) -> bytes:
            raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(StateFileError, match="EIO"):
        StateStore(tmp_path / "x.json", ops=Eio()).load()


# --- creation and saving ---------------------------------------------------------------------


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    StateStore.create(path, SignState(100, 0, 2))
    with pytest.raises(StateFileError, match="already exists"):
        StateStore.create(path, SignState(1, 0, 0))
    assert StateStore(path).load().height == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_create_makes_private_directory_and_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "new" / "state" / "s.json"
        StateStore.create(path, SignState.initial())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_writes_in_place_and_leaves_no_other_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateStore.create(path, SignState.initial())
    inode = path.stat().st_ino
    for h in range(1, 6):
        state = signed_state(vote(PREVOTE, h, 0, A))
        store.save(state)
        assert StateStore(path).load() == state
    assert path.stat().st_ino == inode  # no rename: the same file, rewritten in place
    assert path.stat().st_size == format2.FILE_SIZE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


class Recorder(FileOps):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self.calls.append(f"pwrite {offset}")
        return super().pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        self.calls.append("fdatasync")
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        self.calls.append(f"fsync {'dir' if os.path.isdir(target) else 'file'}")
        super().fsync(fd)

    def replace(self, src: str, dst: str) -> None:
        self.calls.append("rename")
        super().replace(src, dst)


def test_save_writes_the_other_slot_and_syncs_before_returning(tmp_path: Path) -> None:
    ops = Recorder()
    store = StateStore.create(tmp_path / "s.json", SignState.initial())
    writer = StateStore(store.path, ops=ops)
    writer.save(signed_state(vote(PREVOTE, 1, 0, A)))
    writer.save(signed_state(vote(PREVOTE, 2, 0, A)))
    writer.save(signed_state(vote(PREVOTE, 3, 0, A)))
    slot = format2.SLOT_SIZE
    # slot 1, slot 0, slot 1: always the slot not holding the current state
    writes = [f"pwrite {slot}", "pwrite 0", f"pwrite {slot}"]
    assert ops.calls == [call for w in writes for call in (w, "fdatasync")]


def test_make_durable_syncs_the_file_and_its_directory(tmp_path: Path) -> None:
    ops = Recorder()
    store = StateStore.create(tmp_path / "s.json", SignState.initial())
    StateStore(store.path, ops=ops).make_durable()
    assert ops.calls == ["fsync file", "fsync dir"]


def _fail(op: str, err: int) -> FileOps:
    class Faulty(FileOps):
        def open(self, path: str, flags: int, mode: int = 0o600) -> int:
            if op == "open" and flags & (os.O_RDWR | os.O_WRONLY):
                raise OSError(err, os.strerror(err))
            return super().open(path, flags, mode)

        def pwrite(self, fd: int, data: bytes, offset: int) -> int:
            if op == "pwrite":
                super().pwrite(fd, data[: len(data) // 2], offset)
                raise OSError(err, os.strerror(err))
            if op == "short":
                return super().pwrite(fd, data[:100], offset)
            return super().pwrite(fd, data, offset)

        def fdatasync(self, fd: int) -> None:
            if op == "fdatasync":
                raise OSError(err, os.strerror(err))
            super().fdatasync(fd)

    return Faulty()


@pytest.mark.parametrize(
    ("op", "err", "word"),
    [
        ("open", errno.EROFS, "EROFS"),
        ("open", errno.EACCES, "EACCES"),
        ("pwrite", errno.ENOSPC, "ENOSPC"),
        ("short", 0, "short write"),
        ("fdatasync", errno.EIO, "EIO"),
    ],
)
def test_failed_save_is_an_error_and_the_previous_state_still_loads(
    tmp_path: Path, op: str, err: int, word: str
) -> None:
    path = tmp_path / "s.json"
    StateStore.create(path, SignState(7, 0, 1))
    with pytest.raises(StatePersistError) as e:
        StateStore(path, ops=_fail(op, err)).save(signed_state())
    assert str(path) in str(e.value) and word in str(e.value)
    # the slot being written may be torn; the other one still holds the previous state
    # (a failed fdatasync may leave the new one readable: either is safe, see the guard)
    assert StateStore(path).load() in (SignState(7, 0, 1), signed_state())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_failed_directory_sync_when_creating_is_an_error(tmp_path: Path) -> None:
    class NoDirSync(FileOps):
        def fsync(self, fd: int) -> None:
            if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
                raise OSError(errno.EIO, "Input/output error")
            super().fsync(fd)

    with pytest.raises(StatePersistError, match="directory fsync"):
        StateStore.create(tmp_path / "s.json", SignState(7, 0, 1), ops=NoDirSync())


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    store = StateStore.create(tmp_path / "s.json", SignState.initial())
    lock = store.lock()
    with pytest.raises(StateFileError, match="in use by another process"):
        StateStore(store.path).lock()
    lock.release()
    with StateStore(store.path).lock() as again:
        assert again.held


# --- foreign formats (kms state import) ---------------------------------------------------------


def test_cometbft_state_steps_are_renumbered_and_sign_bytes_kept() -> None:
    ours = signed_state(vote(PRECOMMIT, 42, 3, A))
    cometbft = {
        "height": "42",
        "round": 3,
        "step": 3,
        "signature": base64.b64encode(ours.signature).decode(),
        "signbytes": ours.sign_bytes.hex().upper(),
    }
    state, kind = decode_foreign_state(json.dumps(cometbft).encode())
    assert kind == "cometbft"
    assert state == SignState(42, 3, 2, A, ours.sign_bytes, ours.signature)
    for cstep, step in ((0, 0), (1, 0), (2, 1), (3, 2)):
        s, _ = decode_foreign_state(json.dumps({"height": "1", "round": 0, "step": cstep}).encode())
        assert s.step == step and s.sign_bytes == b""


def test_tmkms_state_is_recognised() -> None:
    state, kind = decode_foreign_state(json.dumps(TMKMS_FILES[1][0]).encode())
    assert (kind, state) == ("tmkms", SignState(5, 1, 2, A))
