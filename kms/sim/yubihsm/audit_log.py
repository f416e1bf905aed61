"""The simulated device's audit log (YUBIHSM.md §4.15, upstream tests/device/test_logs.py).

Owns: the list of unread 32-byte entries (at most 62), the running entry
number, the SHA-256 digest chain (digest_n = SHA-256(entry_n[0:16] ||
digest_{n-1})[0:16], continued across freed entries), SET_LOG_INDEX (frees the
entries up to and including an index: later reads start after it), the
force-audit "full" rule and the unlogged boot/auth counters, and the JSON form.
Without force-audit a full log drops its oldest entry. Never decides which
commands are audited (the device does) and never touches I/O.
"""

from __future__ import annotations

import collections
import hashlib
import struct
from typing import Any

from kms.sim.yubihsm.defs import LOG_CAPACITY

ENTRY_FORMAT = "!HBHHHHBL"  # number, command, length, session key, target, second, result, tick
RESET_LINE = b"\x00\x01" + b"\xff" * 14


class AuditLog:
    def __init__(self) -> None:
        self.entries: collections.deque[bytes] = collections.deque()
        self.next_number = 1
        self.last_digest = b"\0" * 16
        self.unlogged_boot = 0
        self.unlogged_auth = 0

    @property
    def used(self) -> int:
        return len(self.entries)

    @property
    def full(self) -> bool:
        return len(self.entries) >= LOG_CAPACITY

    def _append(self, data16: bytes) -> None:
        if self.full:
            self.entries.popleft()
        digest = hashlib.sha256(data16 + self.last_digest).digest()[:16]
        self.entries.append(data16 + digest)
        self.last_digest = digest
        self.next_number = (self.next_number + 1) & 0xFFFF

    def record(
        self,
        command: int,
        length: int,
        session_key: int,
        target: int,
        second: int,
        result: int,
        tick: int,
        *,
        force: bool,
    ) -> bool:
        """Append one command entry; False (nothing written) when forced and full."""
        if force and self.full:
            return False
        self._append(
            struct.pack(
                ENTRY_FORMAT,
                self.next_number,
                command,
                length & 0xFFFF,
                session_key,
                target,
                second,
                result,
                tick & 0xFFFFFFFF,
            )
        )
        return True

    def boot(self, *, force: bool) -> None:
        if force and self.full:
            self.unlogged_boot += 1
            return
        self._append(struct.pack(ENTRY_FORMAT, self.next_number, 0, 0, 0xFFFF, 0, 0, 0, 0))

    def reset(self) -> None:
        """The log right after a factory reset: the reset line (#1) and the boot line (#2)."""
        self.entries.clear()
        self.last_digest = b"\0" * 16
        self.unlogged_boot = self.unlogged_auth = 0
        self.next_number = 1
        self._append(RESET_LINE)
        self.boot(force=False)

    def set_index(self, index: int) -> bool:
        numbers = [struct.unpack("!H", e[:2])[0] for e in self.entries]
        if index not in numbers:
            return False
        for _ in range(numbers.index(index) + 1):
            self.entries.popleft()
        return True

    def response(self) -> bytes:
        return struct.pack(
            "!HHB", self.unlogged_boot, self.unlogged_auth, len(self.entries)
        ) + b"".join(self.entries)

    def to_json(self) -> dict[str, Any]:
        return {
            "next_number": self.next_number,
            "last_digest": self.last_digest.hex(),
            "unlogged_boot": self.unlogged_boot,
            "unlogged_auth": self.unlogged_auth,
            "entries": [e.hex() for e in self.entries],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AuditLog:
        log = cls()
        entries = [bytes.fromhex(e) for e in d.get("entries", [])]
        if any(len(e) != 32 for e in entries) or len(entries) > LOG_CAPACITY:
            raise ValueError("log entries must be at most 62 entries of 32 bytes")
        log.entries.extend(entries)
        log.next_number = int(d["next_number"])
        log.last_digest = bytes.fromhex(d["last_digest"])
        log.unlogged_boot = int(d.get("unlogged_boot", 0))
        log.unlogged_auth = int(d.get("unlogged_auth", 0))
        if len(log.last_digest) != 16:
            raise ValueError("last_digest must be 16 bytes")
        return log
