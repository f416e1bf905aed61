"""Reply frames of the simulated YubiHSM2 and the refusal signal its parts raise.

Owns: `Refuse` (end the current command with a device error code; the device
turns it into an error frame and never lets it escape `SimDevice.handle`), the
success frame (`cmd | 0x80`, length, data) and the error frame
(`7F 00 01 code`). Never touches sessions, objects or I/O; imports only `defs`,
so every other part of the simulator can use it without an import cycle.
"""

from __future__ import annotations

import struct

from kms.sim.yubihsm.defs import Cmd, Err


class Refuse(Exception):
    """End the current command with a device error code.

    A control-flow signal inside the simulated device, never seen by a caller of
    the simulator (which is why it is not in kms/errors.py).
    """

    def __init__(self, code: Err) -> None:
        super().__init__(code.name)
        self.code = code


def error_frame(code: int) -> bytes:
    return bytes((Cmd.ERROR, 0, 1, code))


def ok_frame(cmd: int, data: bytes) -> bytes:
    return struct.pack("!BH", cmd | 0x80, len(data)) + data
