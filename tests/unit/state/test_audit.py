"""The audit log: ordered JSON lines, never blocking, every failure logged and counted, retried,
never dropped silently."""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kms.errors import AuditLogError
from kms.state import audit as audit_mod
from kms.state.audit import AuditEntry, AuditLog, read_audit
from tests.unit.state.helpers import NIL, block

T = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)


def entry(height: int, outcome: audit_mod.Outcome = "signed") -> AuditEntry:
    return AuditEntry.make(
        time=T,
        chain="c",
        height=height,
        round=0,
        step=1,
        block_id=block(0xAA) if height % 2 else NIL,
        sign_bytes=b"x%d" % height,
        outcome=outcome,
        reason=None if outcome == "signed" else "why",
        replica="hsm-a" if outcome == "signed" else None,
    )


def test_lines_round_trip_in_order_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    entries = [entry(h, "signed" if h % 3 else "refused") for h in range(1, 50)]
    for e in entries:
        log.record(e)
    log.close()
    assert list(read_audit(path)) == entries
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_every_failure_is_logged_and_counted_lines_kept_and_written_after_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = True

    def append(path: str, text: str) -> None:
        if broken:
            raise OSError(28, "No space left on device")
        audit_mod._append_lines(path, text)

    path = tmp_path / "a.jsonl"
    log = AuditLog(path, append=append)
    with caplog.at_level(logging.WARNING, logger="kms.state.audit"):
        for h in range(1, 6):
            log.record(entry(h))
            assert not log.flush(timeout=5)
        assert log.failing
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 5 and all("No space left" in r.getMessage() for r in errors)
        assert log.write_failures == 5
        broken = False
        log.record(entry(6))
        assert log.flush(timeout=5)
        assert not log.failing
        assert any("writing again" in r.getMessage() for r in caplog.records)
    log.close()
    assert [e.height for e in read_audit(path)] == [1, 2, 3, 4, 5, 6]


def test_pending_queue_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_mod, "MAX_PENDING_LINES", 3)

    def fail(path: str, text: str) -> None:
        raise OSError(5, "EIO")

    log = AuditLog(tmp_path / "a.jsonl", append=fail)
    for h in range(1, 10):
        log.record(entry(h))
    log.flush(timeout=5)
    log._append = audit_mod._append_lines
    log.record(entry(10))
    log.close()
    assert [e.height for e in read_audit(tmp_path / "a.jsonl")] == [8, 9, 10]


def test_torn_last_line_is_ignored_but_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    good = entry(1).to_line()
    path.write_text(good + good[: len(good) // 2])
    assert len(list(read_audit(path))) == 1
    path.write_text(good + "{oops}\n" + good)
    with pytest.raises(AuditLogError, match="line 2"):
        list(read_audit(path))


def test_missing_log_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(AuditLogError, match=r"nope\.jsonl"):
        list(read_audit(tmp_path / "nope.jsonl"))


def test_rotation_by_rename_starts_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.record(entry(1))
    log.flush(5)
    os.rename(path, tmp_path / "a.jsonl.1")
    log.record(entry(2))
    log.close()
    assert [e.height for e in read_audit(path)] == [2]


def test_a_path_that_cannot_be_written_is_refused_when_opened(tmp_path: Path) -> None:
    with pytest.raises(AuditLogError, match=r"missing/a\.jsonl: cannot write.*mkdir -m 700"):
        AuditLog(tmp_path / "missing" / "a.jsonl")
    (tmp_path / "ro").mkdir(mode=0o500)
    if os.access(tmp_path / "ro", os.W_OK):
        return  # root writes anywhere: the missing-directory case above is the check
    with pytest.raises(AuditLogError, match="cannot write"):
        AuditLog(tmp_path / "ro" / "a.jsonl")


def test_lines_never_written_are_logged_one_by_one_and_counted_at_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(path: str, text: str) -> None:
        raise OSError(5, "EIO")

    log = AuditLog(tmp_path / "a.jsonl", append=fail)
    with caplog.at_level(logging.ERROR, logger="kms.state.audit"):
        for h in range(1, 4):
            log.record(entry(h))
        log.close()
    assert log.not_written == 3
    kept = [r.getMessage() for r in caplog.records if "record not written" in r.getMessage()]
    assert len(kept) == 3
    # each logged line is the full audit record: nothing is lost, it moved to the log
    assert [AuditEntry.from_line(m.split(": ", 2)[2]).height for m in kept] == [1, 2, 3]
    assert any("3 records were not written" in r.getMessage() for r in caplog.records)


def test_lines_pushed_out_of_a_full_queue_are_logged_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(audit_mod, "MAX_PENDING_LINES", 2)
    gate = __import__("threading").Event()

    def blocked(path: str, text: str) -> None:
        gate.wait(5)
        raise OSError(5, "EIO")

    log = AuditLog(tmp_path / "a.jsonl", append=blocked)
    with caplog.at_level(logging.ERROR, logger="kms.state.audit"):
        for h in range(1, 6):
            log.record(entry(h))
        gate.set()
        log.close()
    lost = [r for r in caplog.records if "record lost" in r.getMessage()]
    assert log.lost == len(lost) >= 1
    assert log.not_written == 5
