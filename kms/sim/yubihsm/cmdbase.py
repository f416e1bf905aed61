"""What an in-session command handler of the simulated YubiHSM2 sees of the device.

Owns: `Ctx` (one command's session and the fields its audit entry records, plus
what the device must do once the reply is sealed), `DeviceApi` (the whole
surface the handlers in the commands modules may use: the object store, the
audit policy, randomness, faults, the observability list and a few device
actions) and the `Handler` type. `SimDevice` implements `DeviceApi`; this
module never imports the device, so the device and its commands form no
import cycle. Never touches sessions' crypto or I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kms.sim.yubihsm.audit_policy import AuditPolicy
from kms.sim.yubihsm.faults import Faults
from kms.sim.yubihsm.objstore import ObjectStore
from kms.sim.yubihsm.sessions import Session


@dataclass(slots=True)
class Ctx:
    """Per-command bookkeeping: who runs it, and what the audit log records."""

    session: Session
    command: int
    length: int
    target: int = 0xFFFF
    second: int = 0xFFFF
    after: Callable[[], None] | None = None


class DeviceApi(Protocol):
    """The device as the command handlers use it (all of it public on `SimDevice`)."""

    @property
    def store(self) -> ObjectStore: ...

    @property
    def audit(self) -> AuditPolicy: ...

    @property
    def faults(self) -> Faults: ...

    @property
    def signed(self) -> list[tuple[int, bytes]]:
        """(key id, sha256(message)) of every SIGN_EDDSA, for tests' assertions."""
        ...

    @property
    def max_inner_data(self) -> int: ...

    def random_bytes(self, n: int) -> bytes: ...

    def device_info(self, payload: bytes) -> bytes:
        """The DEVICE_INFO reply (plaintext and in-session alike)."""
        ...

    def persist(self) -> None:
        """Write the state file now (a no-op without one)."""
        ...

    def end_session(self, sid: int) -> None:
        """Free a session slot (CLOSE_SESSION does it after its reply)."""
        ...

    def reset_device(self) -> None:
        """What RESET_DEVICE does after its reply: factory state and the reboot window."""
        ...


Handler = Callable[[DeviceApi, Ctx, bytes], bytes]
