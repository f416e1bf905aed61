"""`kms hsm audit`: prove after the fact that every device signature went through kms.

Owns: reading each device's audit log as the auditor role, verifying its hash
chain (continued across runs from a cursor file), freeing the read entries
with SET_LOG_INDEX, and reconciling the device SIGN_EDDSA entries with the
`signed` lines kms's own per-chain audit logs (kms/state/audit.py, read-only)
attribute to that device. Never signs, never changes kms state.

What can be matched: a device entry records the command, the auth key, the
key, the message length and the result, but not the message, so the match is
by count, per device, over the same window (everything since the last audit):
- D = successful SIGN_EDDSA on the device by the config's signer auth key on a
  configured validator key; K = kms `signed` lines naming that device.
  K > D on a device: kms says it signed there but the device has no entry
  (entries lost, or the log was wiped): a gap.
- Over all devices, D - K extra device signatures are allowed only up to E,
  the kms vote lines that also get a vote-extension signature (non-nil
  precommits, signed or reused; on v0.34/v0.37 chains there are none in
  practice, so E only matters on v0.38+). Anything beyond: a gap, "signed on
  the device without a kms record".
- Any SIGN_EDDSA by another auth key: a gap (signed outside kms).
- Lost device entries (a jump in entry numbers, unlogged boots/auths reported
  by the device) and a broken hash chain: reported, and make the audit fail.
A signature in flight at the moment of the audit can appear as a one-off gap;
re-run. The cursor file (JSON, 0600) keeps per device serial the last entry
read (number and digest) and per kms audit file the lines already counted.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yubihsm.core import AuthSession, LogEntry
from yubihsm.defs import COMMAND

from kms.errors import AuditLogError, HsmAdminError, HsmError
from kms.fsutil import atomic_write
from kms.hsm.devices import Target, device_facts, open_session, strip_name
from kms.state.audit import read_audit

SIGN_OK = COMMAND.SIGN_EDDSA | 0x80
RESET_LINE = b"\x00\x01" + b"\xff" * 14  # the first entry after RESET_DEVICE (YUBIHSM.md §4.15)


@dataclass(slots=True)
class DeviceAudit:
    name: str
    serial: int | None = None
    entries_read: int = 0
    signatures: int = 0  # D
    kms_records: int = 0  # K
    lost_entries: int = 0
    foreign: list[str] = field(default_factory=list)  # SIGN_EDDSA by other auth keys / keys
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not gaps: e.g. a factory reset
    last: tuple[int, str] | None = None  # (number, digest hex) for the cursor
    read_ok: bool = False


@dataclass(slots=True)
class AuditResult:
    devices: list[DeviceAudit]
    extension_allowance: int  # E
    gaps: list[str]

    @property
    def ok(self) -> bool:
        return not self.gaps


def load_cursor(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"devices": {}, "kms": {}}
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        doc.setdefault("devices", {})
        doc.setdefault("kms", {})
        return doc
    except (OSError, ValueError) as e:
        raise HsmAdminError(f"{path}: unreadable audit cursor ({e})") from None


def save_cursor(path: Path, doc: dict[str, Any]) -> None:
    # the one durable whole-file writer: an unpredictable O_EXCL|O_NOFOLLOW temp file,
    # never a fixed name opened with O_TRUNC (a planted symlink there would be followed)
    data = json.dumps(doc, indent=2, sort_keys=True).encode()
    try:
        atomic_write(path, data, mode=0o600)
    except OSError as e:
        raise HsmAdminError(f"{path}: cannot write the audit cursor ({e})") from None


def _read_log(a: AuthSession, previous: tuple[int, str] | None, r: DeviceAudit) -> list[LogEntry]:
    """New entries since `previous`, chain-verified (freed later, by `free_log`)."""
    # parsed here rather than by get_log_entries(), which stops at the first bad digest
    # without saying where: the report names the entry
    resp = a.send_secure_cmd(COMMAND.GET_LOG_ENTRIES)
    n_boot, n_auth, count = struct.unpack("!HHB", resp[:5])
    if len(resp) != 5 + 32 * count:
        raise HsmAdminError(f"{r.name}: malformed GET_LOG_ENTRIES response")
    if n_boot or n_auth:
        r.lost_entries += n_boot + n_auth
        r.problems.append(
            f"device reports {n_boot} unlogged boots and {n_auth} unlogged"
            " authentications (log was full under forced audit)"
        )
    entries = [LogEntry.parse(resp[5 + 32 * i : 37 + 32 * i]) for i in range(count)]
    restart = next((i for i, e in enumerate(entries) if e.data == RESET_LINE), None)
    if restart is not None and previous is not None:
        # RESET_DEVICE wiped the log and numbering restarted at the reset line: the chain
        # begins anew there, and whatever the device held before it is gone
        r.notes.append(
            f"the device was factory-reset after entry #{previous[0]}: its log restarted"
        )
        entries, previous = entries[restart:], None
    if previous is not None:
        entries = [e for e in entries if 0 < (e.number - previous[0]) & 0xFFFF < 0x8000]
    prev: LogEntry | None = None
    for e in entries:
        if prev is None and previous is not None:
            gap = (e.number - previous[0] - 1) & 0xFFFF
            if gap:
                r.lost_entries += gap
                r.problems.append(f"{gap} entries after #{previous[0]} were lost (log overflowed)")
            else:
                last_read = LogEntry(
                    previous[0], COMMAND.ECHO, 0, 0, 0, 0, 0, 0, bytes.fromhex(previous[1])
                )  # only its number and digest matter to validate()
                if not e.validate(last_read):
                    r.problems.append(f"hash chain broken at entry #{e.number}")
        elif prev is not None:
            if (e.number - prev.number) & 0xFFFF != 1:
                gap = (e.number - prev.number - 1) & 0xFFFF
                r.lost_entries += gap
                r.problems.append(f"{gap} entries missing before #{e.number}")
            elif not e.validate(prev):
                r.problems.append(f"hash chain broken at entry #{e.number}")
        prev = e
    if entries:
        last = entries[-1]
        r.last = (last.number, last.digest.hex())
    elif previous is not None:
        r.last = previous
    return entries


def free_log(t: Target, auditor_key: int, password: str, number: int) -> None:
    """SET_LOG_INDEX: the entries up to `number` were read and reconciled; free them."""
    s = open_session(t, auditor_key, password)
    try:
        s.call(lambda a: a.set_log_index(number), ": set log index")
    finally:
        s.close()


def audit_device(t: Target, auditor_key: int, password: str, cursor: dict[str, Any]) -> DeviceAudit:
    r = DeviceAudit(t.name)
    try:
        r.serial = device_facts(t).serial
        prev_doc = cursor.get(str(r.serial))
        previous = (int(prev_doc["number"]), str(prev_doc["digest"])) if prev_doc else None
        s = open_session(t, auditor_key, password)
        try:
            entries = s.call(lambda a: _read_log(a, previous, r), ": audit log")
        finally:
            s.close()
    except HsmError as e:
        r.problems.append(strip_name(e, t.name))
        return r
    r.read_ok = True
    r.entries_read = len(entries)
    for entry in entries:
        if entry.command != COMMAND.SIGN_EDDSA or entry.result != SIGN_OK:
            continue
        if entry.session_key == t.auth_key and entry.target_key in t.key_ids:
            r.signatures += 1
        else:
            r.foreign.append(
                f"entry #{entry.number}: SIGN_EDDSA by auth key {entry.session_key} with key"
                f" {entry.target_key}, outside kms"
            )
    return r


def kms_records(
    audit_files: Sequence[Path], cursor: dict[str, int]
) -> tuple[dict[str, int], int, dict[str, int]]:
    """(signed lines per replica, extension allowance E, new line counts per file)."""
    per_replica: dict[str, int] = {}
    allowance = 0
    counts: dict[str, int] = {}
    for path in audit_files:
        key = str(path)
        seen = int(cursor.get(key, 0))
        n = 0
        if path.exists():
            try:
                for n, entry in enumerate(read_audit(path), start=1):
                    if n <= seen:
                        continue
                    non_nil_precommit = entry.step == 2 and bool(entry.block_id.get("hash"))
                    if entry.outcome in ("signed", "reused") and non_nil_precommit:
                        allowance += 1
                    if entry.outcome == "signed" and entry.replica:
                        per_replica[entry.replica] = per_replica.get(entry.replica, 0) + 1
                        # a hedged or failed-over request may have been signed there too
                        allowance += len(entry.also_sent_to)
            except AuditLogError as e:
                raise HsmAdminError(str(e)) from None
        if n < seen:
            raise HsmAdminError(f"{path}: shorter than at the last audit (rotated or truncated?)")
        counts[key] = max(n, seen)
    return per_replica, allowance, counts


def run_audit(
    targets: Sequence[Target],
    audit_files: Sequence[Path],
    auditor_key: int,
    password: str,
    cursor_path: Path,
    *,
    baseline: bool = False,
) -> AuditResult:
    """One audit run. `baseline`: start the window now (first audit of devices and kms
    logs with earlier history): the hash chains are still verified, counts are not."""
    if not targets:
        raise HsmAdminError("no devices in the config")
    if not audit_files:
        raise HsmAdminError("no chain in the config has an audit_log: nothing to reconcile with")
    cursor = load_cursor(cursor_path)
    devices = [audit_device(t, auditor_key, password, cursor["devices"]) for t in targets]
    per_replica, allowance, counts = kms_records(audit_files, cursor["kms"])
    gaps: list[str] = []
    extra = 0
    if baseline:
        per_replica, allowance = {}, 0
        for d in devices:
            d.signatures = 0
            d.foreign = []
    for d in devices:
        d.kms_records = per_replica.pop(d.name, 0)
        gaps += [f"{d.name}: {p}" for p in d.problems]
        gaps += [f"{d.name}: {f}" for f in d.foreign]
        if d.kms_records > d.signatures:
            gaps.append(
                f"{d.name}: kms recorded {d.kms_records} signatures here, the device log"
                f" has {d.signatures}"
            )
        extra += max(0, d.signatures - d.kms_records)
    for name, n in sorted(per_replica.items()):
        gaps.append(f"kms recorded {n} signatures on {name}, which is not in the config")
    if extra > allowance:
        gaps.append(
            f"{extra - allowance} device signatures have no kms record"
            f" ({extra} beyond kms's vote records; at most {allowance} are vote extensions"
            " or hedged and failed-over attempts)"
        )
    if all(d.read_ok for d in devices):
        # only a complete reading moves the window: otherwise the kms lines counted now
        # would be missing from the next run's comparison with the unread device
        for d in devices:
            if d.serial is not None and d.last is not None:
                cursor["devices"][str(d.serial)] = {"number": d.last[0], "digest": d.last[1]}
        cursor["kms"] = counts
        save_cursor(cursor_path, cursor)  # before freeing: a crash in between loses nothing
        for t, d in zip(targets, devices, strict=True):
            if d.last is not None:
                try:
                    free_log(t, auditor_key, password, d.last[0])
                except HsmError as e:
                    gaps.append(f"{t.name}: log not freed ({strip_name(e, t.name)})")
    else:
        gaps.append("not every device was read: the audit window was not advanced")
    return AuditResult(devices, allowance, gaps)
