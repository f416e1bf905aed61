"""The per-chain audit log: one JSON line per signature, reuse, refusal or failed attempt.

Owns: the audit line format (`AuditEntry`), appending lines in order on a private
writer thread, and reading a log back (`read_audit`, for `kms state history`).
Never decides, signs or touches the state file.

Rules:
- A line is appended only after the state it describes was persisted (the guard
  calls `record()` after `save()` returned), so the log never shows a signature
  the state file does not know.
- The log is evidence, not a gate: a broken audit log never blocks or delays
  signing. But it is never dropped silently either: the file must be writable
  when the log is opened (start-up refuses otherwise); at run time every failed
  write is logged (ERROR) and counted, the lines are kept in a bounded queue and
  every later record retries (recovery is logged); a line pushed out of a full
  queue is logged and counted; at close, lines that still could not be written
  are logged one by one (so they reach the journal) with their count, and
  `not_written` tells the caller how many were lost to the file.
- Each write opens the file in append mode (0600), writes whole lines and closes
  it, so log rotation by rename needs no signal. There is no fsync per line: the
  state file, not the audit log, is what protects against double signing.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from kms.errors import AuditLogError
from kms.privval.messages import BlockID
from kms.state.format1 import encode_block_id, format_time
from kms.state.machine import step_name

log = logging.getLogger(__name__)

Outcome = Literal["signed", "reused", "refused", "error"]
MAX_PENDING_LINES = 10_000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    time: datetime
    chain: str
    height: int
    round: int
    step: int
    block_id: dict[str, Any]  # as in the state file
    sign_bytes_sha256: str  # hex; "" when there were no sign bytes
    outcome: Outcome
    reason: str | None = None
    replica: str | None = None
    # other replicas the same sign bytes were sent to (hedged or failed over): each may
    # also hold this signature in its device log (`kms hsm audit` allows for them)
    also_sent_to: tuple[str, ...] = ()

    @classmethod
    def make(
        cls,
        *,
        time: datetime,
        chain: str,
        height: int,
        round: int,
        step: int,
        block_id: BlockID,
        sign_bytes: bytes,
        outcome: Outcome,
        reason: str | None = None,
        replica: str | None = None,
        also_sent_to: tuple[str, ...] = (),
    ) -> AuditEntry:
        return cls(
            time=time,
            chain=chain,
            height=height,
            round=round,
            step=step,
            block_id=encode_block_id(block_id),
            sign_bytes_sha256=hashlib.sha256(sign_bytes).hexdigest() if sign_bytes else "",
            outcome=outcome,
            reason=reason,
            replica=replica,
            also_sent_to=also_sent_to,
        )

    @property
    def step_name(self) -> str:
        return step_name(self.step)

    def to_line(self) -> str:
        obj = asdict(self)
        obj["time"] = format_time(self.time)
        obj["height"] = str(self.height)
        obj["step_name"] = self.step_name
        if not self.also_sent_to:
            del obj["also_sent_to"]  # the common case: lines stay as they were
        return json.dumps(obj, separators=(",", ":"), sort_keys=True) + "\n"

    @classmethod
    def from_line(cls, line: str) -> AuditEntry:
        """Parse one line; ValueError/KeyError/TypeError on a malformed one."""
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        outcome = obj["outcome"]
        if outcome not in ("signed", "reused", "refused", "error"):
            raise ValueError(f"unknown outcome {outcome!r}")
        t = datetime.fromisoformat(obj["time"])
        return cls(
            time=t,
            chain=str(obj["chain"]),
            height=int(obj["height"]),
            round=int(obj["round"]),
            step=int(obj["step"]),
            block_id=dict(obj["block_id"]),
            sign_bytes_sha256=str(obj["sign_bytes_sha256"]),
            outcome=outcome,
            reason=obj.get("reason"),
            replica=obj.get("replica"),
            also_sent_to=tuple(str(n) for n in obj.get("also_sent_to", ())),
        )


class AuditLog:
    """Append-only JSONL log for one chain, written on its own thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        append: Callable[[str, str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        check_writable(self.path)
        self._append = append or _append_lines
        self._pending: collections.deque[tuple[int, str]] = collections.deque()
        self._seq = 0
        self._dropped = 0  # pushed out of the full queue since the last good write
        self._failing = False
        self.write_failures = 0  # failed write attempts, ever
        self.lost = 0  # lines pushed out of the full queue, ever
        self.not_written = 0  # lines the file never got (set by close)
        self._mutex = threading.Lock()
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"audit-{self.path.name}"
        )
        self._last: concurrent.futures.Future[None] | None = None

    @property
    def failing(self) -> bool:
        """True while the last write attempt failed."""
        return self._failing

    def record(self, entry: AuditEntry) -> None:
        """Queue `entry` and return at once; lines are written in the order recorded."""
        with self._mutex:
            if len(self._pending) >= MAX_PENDING_LINES:
                _, line = self._pending.popleft()
                self._dropped += 1
                self.lost += 1
                log.error(
                    "audit log %s: queue full (%d lines); record lost: %s",
                    self.path,
                    MAX_PENDING_LINES,
                    line.rstrip("\n"),
                )
            self._seq += 1
            self._pending.append((self._seq, entry.to_line()))
        self._last = self._thread.submit(self._drain)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued writes; True if nothing is left pending."""
        last = self._last
        if last is not None:
            concurrent.futures.wait([last], timeout=timeout)
        with self._mutex:
            return not self._pending

    def close(self) -> None:
        """Write what is queued (one last try), then report every line that never got written."""
        if not self.flush(timeout=5.0):
            self._last = self._thread.submit(self._drain)
            self.flush(timeout=5.0)
        self._thread.shutdown(wait=True)
        with self._mutex:
            left = [line for _, line in self._pending]
            self._pending.clear()
        self.not_written = len(left) + self.lost
        for line in left:
            log.error("audit log %s: record not written: %s", self.path, line.rstrip("\n"))
        if self.not_written:
            log.error(
                "audit log %s: %d records were not written to the file (%d lost to the queue"
                " limit, %d failed writes); they are in this log",
                self.path,
                self.not_written,
                self.lost,
                self.write_failures,
            )

    def _drain(self) -> None:
        with self._mutex:
            batch = list(self._pending)
            dropped = self._dropped
        if not batch:
            return
        try:
            self._append(str(self.path), "".join(line for _, line in batch))
        except Exception as e:
            self._failing = True
            self.write_failures += 1
            log.error(
                "audit log %s: write failed (%s); signing continues, %d lines are kept and"
                " retried with the next record (%d failed writes so far)",
                self.path,
                e,
                len(batch),
                self.write_failures,
            )
            return
        last_written = batch[-1][0]
        with self._mutex:
            while self._pending and self._pending[0][0] <= last_written:
                self._pending.popleft()
            self._dropped -= dropped
        if self._failing:
            self._failing = False
            log.warning(
                "audit log %s: writing again (%d queued lines written, %d lost to the queue limit)",
                self.path,
                len(batch),
                dropped,
            )


def check_writable(path: Path) -> None:
    """Refuse (AuditLogError) an audit log path that cannot be appended to right now."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        hint = (
            f"create the directory first (mkdir -m 700 {path.parent})"
            if not path.parent.is_dir()
            else "fix its permissions or the chain's audit_log"
        )
        raise AuditLogError(f"audit log {path}: cannot write: {e.strerror or e}; {hint}") from None
    os.close(fd)


def _append_lines(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        data = text.encode("utf-8")
        while data:
            n = os.write(fd, data)
            data = data[n:]
    finally:
        os.close(fd)


def read_audit(path: str | os.PathLike[str]) -> Iterator[AuditEntry]:
    """Yield the entries of an audit log; AuditLogError names the file and line."""
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - generator owns it
    except OSError as e:
        raise AuditLogError(f"audit log {path}: cannot read: {e.strerror or e}") from None
    with f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield AuditEntry.from_line(line)
            except (ValueError, KeyError, TypeError) as e:
                if not line.endswith("\n"):
                    return  # a torn last line from a crash: everything before it is good
                raise AuditLogError(f"audit log {path}: line {number} is malformed: {e}") from None


def now_utc() -> datetime:
    return datetime.now(UTC)
