"""Which commands the simulated YubiHSM2 audits, and what it writes for them.

Owns: the force-audit and per-command audit options (SET_OPTION/GET_OPTION
values, FIXED ones never change again), the "log full under force-audit"
refusal rule, the tick (milliseconds since boot on the injected clock), and
writing an entry to the `AuditLog` for an audited command. Every change calls
`on_change` (the device persists its state there). Never touches sessions,
objects or I/O; the log's ring and digest chain belong to `audit_log.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kms.sim.yubihsm.audit_log import AuditLog
from kms.sim.yubihsm.defs import AUDITABLE_COMMANDS, Audit, Cmd, Err
from kms.sim.yubihsm.frames import Refuse

# Reading and freeing the log must stay possible when a forced log is full.
LOG_MAINTENANCE = (Cmd.GET_LOG_ENTRIES, Cmd.SET_LOG_INDEX)


class AuditPolicy:
    def __init__(self, clock: Callable[[], float], on_change: Callable[[], None]) -> None:
        self._clock = clock
        self._on_change = on_change
        self.log = AuditLog()
        self.force = Audit.OFF
        self.per_command: dict[int, Audit] = {}
        self.boot_time = clock()

    def audited(self, cmd: int) -> bool:
        return self.per_command.get(cmd, Audit.OFF) != Audit.OFF

    @property
    def forced(self) -> bool:
        return self.force != Audit.OFF

    def check_room(self, cmd: int) -> None:
        """LOG_FULL when force-audit is on, `cmd` is audited and the log has no room."""
        if self.forced and self.audited(cmd) and self.log.full and cmd not in LOG_MAINTENANCE:
            raise Refuse(Err.LOG_FULL)

    def record(
        self, cmd: int, length: int, session_key: int, target: int, second: int, result: int
    ) -> None:
        if not self.audited(cmd):
            return
        tick = int((self._clock() - self.boot_time) * 1000) & 0xFFFFFFFF
        written = self.log.record(
            cmd, length, session_key, target, second, result, tick, force=self.forced
        )
        if not written and cmd in (Cmd.CREATE_SESSION, Cmd.AUTHENTICATE_SESSION):
            self.log.unlogged_auth += 1
        self._on_change()

    # ------------------------------------------------------------------ options

    def set_force(self, value: int) -> None:
        if self.force == Audit.FIXED:
            raise Refuse(Err.INVALID_DATA)
        self.force = Audit(value)
        self._on_change()

    def set_per_command(self, pairs: list[tuple[int, int]]) -> None:
        if any(c not in AUDITABLE_COMMANDS or v not in (0, 1, 2) for c, v in pairs):
            raise Refuse(Err.INVALID_DATA)
        for c, v in pairs:
            if self.per_command.get(c) != Audit.FIXED:
                self.per_command[c] = Audit(v)
        self._on_change()

    def per_command_bytes(self) -> bytes:
        return b"".join(bytes([c, self.per_command.get(c, Audit.OFF)]) for c in AUDITABLE_COMMANDS)

    # ------------------------------------------------------------------ life cycle

    def factory(self) -> None:
        """After a factory reset: options off, the log with its reset and boot lines.

        The tick's origin (`boot_time`) is the device's to move: it does on RESET_DEVICE."""
        self.force = Audit.OFF
        self.per_command = {}
        self.log.reset()

    def to_json(self) -> dict[str, Any]:
        return {
            "options": {
                "force_audit": int(self.force),
                "command_audit": {str(c): int(v) for c, v in self.per_command.items()},
            },
            "log": self.log.to_json(),
        }

    def load_json(self, doc: dict[str, Any]) -> None:
        """Options and log from a state document (raises ValueError/KeyError/TypeError)."""
        opts = doc.get("options", {})
        self.force = Audit(int(opts.get("force_audit", 0)))
        self.per_command = {int(c): Audit(int(v)) for c, v in opts.get("command_audit", {}).items()}
        self.log = AuditLog.from_json(doc["log"]) if "log" in doc else AuditLog()
        if "log" not in doc:
            self.log.reset()
